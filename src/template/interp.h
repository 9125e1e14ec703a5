// Tree-walking interpreter of a parsed template. One Interp per render: it holds the scopes
// and the output, the Program is only read.
#pragma once
#include <string>

#include "template/ast.h"

namespace mamba::tmpl {

// Renders `program` with the variables of `vars` (a dict). Throws TemplateError (located
// "<name>:<line>:<col>: ...") or RaisedError (raise_exception).
std::string render_program(const Program& program, const std::string& name, const Value& vars);

}  // namespace mamba::tmpl
