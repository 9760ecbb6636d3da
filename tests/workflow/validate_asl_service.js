// Validate state machine definitions with AWS's own amazon-states-language-service (the
// language service behind the AWS Toolkit for VS Code), which knows Distributed Map.
// Usage: node validate_asl_service.js FILE...
// Prints {"FILE": [diagnostics...]} as JSON: errors and warnings (an empty list: valid).
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const asl = require(path.join(root, "node_modules", "amazon-states-language-service"));
const { TextDocument } = require(
  path.join(root, "node_modules", "vscode-languageserver-textdocument"),
);

async function main() {
  const service = asl.getLanguageService({});
  const result = {};
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const document = TextDocument.create(`file://${file}`, "asl", 0, text);
    const json = service.parseJSONDocument(document);
    const diagnostics = await service.doValidation(document, json);
    result[path.basename(file)] = diagnostics.map((d) => ({
      severity: d.severity,
      message: d.message,
      line: d.range.start.line + 1,
    }));
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
