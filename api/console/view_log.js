// Log integrity: the head, the chain's tip, the last verification; operators may run one.
import { h, pairs, replace } from "./dom.js";
import { num } from "./format.js";
import { onFigures } from "./refresh.js";

export function mount(root, ctx) {
  const status = h("div", { class: "panel", dataset: { testid: "log-status" } });
  const result = h("div", { dataset: { testid: "verify-result" } });
  const mayVerify = ctx.session.role === "operator" || ctx.session.role === "admin";
  const button = mayVerify ? h("button", {
    type: "button", dataset: { testid: "verify" },
    onclick: async () => {
      button.disabled = true;
      replace(result, h("p", { class: "dim" }, "verifying every event of the log…"));
      try {
        const found = await ctx.api.post("/log/verify");
        replace(result, verification(found, "now"));
        await load();
      } catch (error) {
        ctx.problem(error);
      } finally {
        button.disabled = false;
      }
    },
  }, "Verify the whole log now") : null;
  root.append(h("div", { class: "toolbar" }, h("h1", null, "Log integrity"),
    h("span", { class: "grow" }), button), status, result);

  async function load() {
    const log = await ctx.api.get("/log");
    replace(status,
      pairs(null,
        "head position", h("span", { class: "mono", dataset: { testid: "head" } }, num(log.head)),
        "chain tip", h("span", { class: "mono", dataset: { testid: "tip" } }, log.chain_tip || "–"),
        "head recorded", log.head_recorded_at || "–",
        "verifying now", log.verifying ? "yes" : "no"),
      h("h2", null, "Last verification"),
      log.last_verification ? verification(log.last_verification, "last")
        : h("p", { class: "dim", dataset: { testid: "never" } }, "The log has not been verified from here yet."),
      h("p", { class: "dim" }, "Anyone with a copy of the log can check it: atom replay verify --db <log>"));
  }

  const stop = onFigures(ctx, load);
  return { unmount: stop };
}

function verification(v, testid) {
  return pairs({ dataset: { testid: `verification-${testid}`, ok: String(v.ok) } },
    "result", h("span", { class: v.ok ? "badge ok" : "badge bad" }, v.ok ? "intact" : "broken"),
    "events", num(v.events), "streams", num(v.streams),
    "up to position", num(v.head), "its hash", h("span", { class: "mono" }, v.head_hash),
    ...(v.ok ? [] : ["first bad position", num(v.first_bad_position), "problem", v.problem]),
    "took", `${v.seconds} s`, "asked by key", v.by || "–",
    "recorded at position", num(v.position), ...(v.at ? ["at", v.at] : []));
}
