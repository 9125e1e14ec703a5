// Streams a chat completion from a running `mambacpp serve` through the official `openai` npm
// package, then asks the same without streaming; prints one JSON line for server_test to check.
// Usage: node openai_client_test.cjs PORT MODEL API_KEY
const OpenAI = require('openai');

async function main() {
  const [port, model, apiKey] = process.argv.slice(2);
  const client = new OpenAI({baseURL: `http://127.0.0.1:${port}/v1`, apiKey});
  const request = {model, messages: [{role: 'user', content: 'Hello there'}], max_tokens: 8, temperature: 0};
  const stream = await client.chat.completions.create(
      {...request, stream: true, stream_options: {include_usage: true}});
  let text = '', finish = null, usage = null, chunks = 0, role = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.role) role = choice.delta.role;
      text += choice.delta.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  const whole = await client.chat.completions.create(request);
  const models = await client.models.list();
  console.log(JSON.stringify({
    text, finish, usage, chunks, role,
    whole: whole.choices[0].message.content,
    model: models.data[0].id,
  }));
}

main().catch((e) => {
  console.error(`openai client: ${e}`);
  process.exit(1);
});
