// Builds the widget into ../widget_static/ (checked in, so Python users need no Node):
//   chatlead.js              the loader (the embed URL; names the UI file literally)
//   chatlead-ui.<hash>.js    the chat UI; <hash> = first 10 base64url chars of its SHA-256
//   chatlead-triggers.js     the proactive openers, served per site (server/widget.py)
// `node build.mjs --check` builds in memory and fails if the checked-in files differ.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "widget_static");
const check = process.argv.includes("--check");

// CSS files are imported as minified text, adopted into the widget's shadow root.
const cssText = {
  name: "css-text",
  setup(build) {
    build.onLoad({ filter: /\.css$/ }, async (args) => {
      const source = readFileSync(args.path, "utf8");
      const { code } = await esbuild.transform(source, { loader: "css", minify: true });
      return { contents: `export default ${JSON.stringify(code.trim())};`, loader: "js" };
    });
  },
};

const bundle = async (entry, define = {}) => {
  const result = await esbuild.build({
    entryPoints: [join(here, entry)],
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2020",
    legalComments: "none",
    banner: { js: "/*! chatlead widget | MIT | sources: widget_src/ */" },
    charset: "utf8",
    write: false,
    define,
    plugins: [cssText],
  });
  return result.outputFiles[0].text;
};

const ui = await bundle("ui/main.js");
const hash = createHash("sha256").update(ui).digest("base64url").slice(0, 10);
const uiName = `chatlead-ui.${hash}.js`;
const loader = await bundle("loader.js", { UI_FILE: JSON.stringify(uiName) });
// served per site with the site's triggers in place of __CHATLEAD_TRIGGERS__ (server/widget.py)
const triggers = await bundle("triggers.js");
const files = { "chatlead.js": loader, [uiName]: ui, "chatlead-triggers.js": triggers };

const stale = readdirSync(out).filter((f) => /^chatlead-ui\..+\.js$/.test(f) && f !== uiName);
if (check) {
  const differ = Object.entries(files).filter(([name, text]) => {
    try {
      return readFileSync(join(out, name), "utf8") !== text;
    } catch {
      return true;
    }
  });
  const wrong = [...differ.map(([name]) => name), ...stale];
  if (wrong.length) {
    console.error(`widget_static/ is not the build of widget_src/: ${wrong.join(", ")}`);
    console.error("run: (cd widget_src && npm ci && npm run build) and commit the result");
    process.exit(1);
  }
  console.log(`widget build is up to date (${uiName})`);
} else {
  for (const name of stale) unlinkSync(join(out, name));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(out, name), text);
  console.log(`wrote widget_static/chatlead.js and widget_static/${uiName}`);
}
