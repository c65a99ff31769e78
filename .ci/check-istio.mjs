// Schema-level check of the Istio resources in deploy/istio/ (no cluster or istioctl here).
//
// Every document is checked two ways, both from @kubernetes-models/istio (generated from
// Istio's CRDs, crd-all.gen.yaml of Istio 1.29):
//   1. the CRD's OpenAPI schema, compiled (types, enums, patterns, required fields), as the
//      API server validates a resource;
//   2. the TypeScript model of the same schema: the document is written out as an object
//      literal of the resource's interface and compiled with `tsc --strict --noEmit`, so a
//      field the API does not have is an error (excess property check), as with
//      `kubectl apply --validate=strict`.
// Kinds without a model here fail the check. The IstioOperator CRD does not describe its spec
// (meshConfig and the rest are free-form): for it only apiVersion, kind and metadata are
// checked, and the check says so.
//
//   NODE_PATH=target/ci-node/node_modules node .ci/check-istio.mjs deploy/istio/*.yaml
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const modules = resolve(process.env.CI_NODE || "target/ci-node", "node_modules");
const require = createRequire(join(modules, "x.js"));
const yaml = require("js-yaml");

// apiVersion/kind -> [module path under @kubernetes-models/istio, class and interface name]
const MODELS = {
  "security.istio.io/v1/AuthorizationPolicy": ["security.istio.io/v1/AuthorizationPolicy", "AuthorizationPolicy"],
  "install.istio.io/v1alpha1/IstioOperator": ["install.istio.io/v1alpha1/IstioOperator", "IstioOperator"],
};
const UNTYPED_SPEC = new Set(["install.istio.io/v1alpha1/IstioOperator"]);

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: check-istio.mjs FILE.yaml...");
  process.exit(2);
}

let failed = false;
const imports = [];
const literals = [];
for (const file of files) {
  const docs = yaml.loadAll(readFileSync(file, "utf8")).filter((d) => d != null);
  for (const [i, doc] of docs.entries()) {
    const key = `${doc.apiVersion}/${doc.kind}`;
    const where = `${file} document ${i + 1} (${key} ${doc.metadata?.name ?? "?"})`;
    const model = MODELS[key];
    if (!model) {
      console.error(`${where}: no schema for this kind here`);
      failed = true;
      continue;
    }
    const [path, name] = model;
    const m = await import(join(modules, "@kubernetes-models/istio", `${path}.js`));
    try {
      new m[name](doc).validate();
      const note = UNTYPED_SPEC.has(key) ? " (the CRD leaves its spec free-form: not checked)" : "";
      console.log(`${where}: valid against the CRD schema${note}`);
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      failed = true;
    }
    const typed = { ...doc };
    if (UNTYPED_SPEC.has(key)) delete typed.spec;
    const n = literals.length;
    imports.push(`import type { I${name} as T${n} } from "@kubernetes-models/istio/${path}";`);
    literals.push({ doc: typed, where });
  }
}

// The TypeScript models: every field of every document must be a property of the type at
// that place (through unions, intersections and arrays). tsc's own excess property check is
// not enough here: the models are unions of intersections, where it skips nested objects.
const tsc = require("typescript");
const dir = mkdtempSync(join(tmpdir(), "check-istio-"));
try {
  const file = join(dir, "docs.ts");
  writeFileSync(
    file,
    imports.join("\n") + "\n" + literals.map((_, n) => `export declare const d${n}: T${n};`).join("\n") + "\n",
  );
  const program = tsc.createProgram([file], {
    strict: true,
    noEmit: true,
    module: tsc.ModuleKind.NodeNext,
    moduleResolution: tsc.ModuleResolutionKind.NodeNext,
    baseUrl: dir,
    paths: { "*": [join(modules, "*")] },
  });
  const diagnostics = tsc.getPreEmitDiagnostics(program);
  if (diagnostics.length) {
    for (const d of diagnostics) console.error(tsc.flattenDiagnosticMessageText(d.messageText, "\n"));
    throw new Error("the models do not compile");
  }
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const declared = new Map();
  tsc.forEachChild(source, function visit(node) {
    if (tsc.isVariableDeclaration(node)) declared.set(node.name.text, checker.getTypeAtLocation(node));
    tsc.forEachChild(node, visit);
  });
  const members = (t) => (t.isUnion() ? t.types : [t]).filter((m) => !(m.flags & tsc.TypeFlags.Undefined));
  const errors = new Set();
  const walk = (value, type, path, where) => {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) {
      const elems = members(type)
        .map((m) => checker.getIndexTypeOfType(m, tsc.IndexKind.Number))
        .filter(Boolean);
      value.forEach((v, i) => elems.forEach((e) => walk(v, e, `${path}[${i}]`, where)));
      return;
    }
    const ms = members(type);
    const open = ms.some((m) => checker.getIndexTypeOfType(m, tsc.IndexKind.String));
    for (const [k, v] of Object.entries(value)) {
      const props = ms.map((m) => checker.getPropertyOfType(m, k)).filter(Boolean);
      if (props.length === 0) {
        if (!open) errors.add(`${where}: ${path}.${k}: no such field in the API`);
        continue;
      }
      for (const p of props) walk(v, checker.getTypeOfSymbol(p), `${path}.${k}`, where);
    }
  };
  literals.forEach((l, n) => walk(l.doc, declared.get(`d${n}`), "", l.where));
  for (const e of errors) console.error(e);
  if (errors.size) throw new Error(`${errors.size} unknown field(s)`);
  console.log(`${literals.length} document(s): every field is in the API's TypeScript model`);
} catch (e) {
  console.error(`the documents do not fit the TypeScript models: ${e.message}`);
  failed = true;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
