// Validate many state machine definitions in one node process with the npm asl-validator.
// Usage: node validate_asl.js FILE...   Prints {"FILE": null | [errors...]} as JSON.
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const validator = require(path.join(root, "node_modules", "asl-validator"));
const validate = validator.default || validator;
const result = {};
for (const file of process.argv.slice(2)) {
  const { isValid, errors } = validate(JSON.parse(fs.readFileSync(file, "utf8")));
  result[path.basename(file)] = isValid ? null : errors;
}
process.stdout.write(JSON.stringify(result));
