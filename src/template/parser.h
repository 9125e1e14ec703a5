// Parser of Jinja2 template syntax (the subset HF chat templates use) into a Program.
#pragma once
#include <string>

#include "template/ast.h"

namespace mamba::tmpl {

// Throws mamba::Error(parse) "<name>:<line>:<col>: <what was expected>" for bad syntax, unknown
// tags, filters or tests.
Program parse_template(const std::string& source, const std::string& name);

}  // namespace mamba::tmpl
