// Evaluates CEL expressions against bindings with @bufbuild/cel, for
// helm/tests/test_chart.py (the chart's ValidatingAdmissionPolicy against
// sample admission requests).
//
//   node eval.js NODE_MODULES < {"expressions": {"id": "cel"}, "cases": {"case": {bindings}}}
//   -> {"case": {"id": true | false | "error: ..."}}
//
// Every expression is parsed once; a parse error fails the whole run. A
// result that is not a bool is reported as an error: the API server refuses
// such a validation too.
"use strict";
const path = require("path");
const cel = require(path.join(process.argv[2], "@bufbuild/cel"));

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { expressions, cases } = JSON.parse(input);
  const env = cel.celEnv();
  const plans = {};
  for (const [id, text] of Object.entries(expressions)) {
    try {
      plans[id] = cel.plan(env, cel.parse(text));
    } catch (e) {
      process.stderr.write(`eval.js: ${id}: cannot parse: ${e.message}\n${text}\n`);
      process.exit(2);
    }
  }
  const out = {};
  for (const [name, bindings] of Object.entries(cases)) {
    out[name] = {};
    for (const [id, run] of Object.entries(plans)) {
      let r;
      try {
        r = run(bindings);
      } catch (e) {
        r = cel.celError(String(e && e.message));
      }
      out[name][id] = cel.isCelError(r) ? `error: ${r.message}` : typeof r === "boolean" ? r : `error: not a bool: ${String(r)}`;
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
