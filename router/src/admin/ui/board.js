// strangler's web board: keeps the page's live part fresh (every 2 s) and
// sends actions to the admin API. The admin API decides: gates, roles and
// the audit log are the same as for `strangler route …`.
"use strict";

const live = document.body.dataset.live;
const main = document.getElementById("live");
const dialog = document.getElementById("act");
const form = document.getElementById("act-form");
const result = document.getElementById("act-result");
let busy = false;

async function refresh() {
  if (!live || busy) return;
  try {
    const resp = await fetch(live, { credentials: "same-origin", cache: "no-store" });
    if (resp.status === 401 || (resp.redirected && resp.url.endsWith("/ui/login"))) { window.location = "/ui/login"; return; }
    if (resp.ok) main.innerHTML = await resp.text();
  } catch (e) {
    // The proxy restarting: try again on the next tick.
  }
}
setInterval(refresh, 2000);

const titles = {
  promote: "Promote {route} one step",
  percent: "Set the canary percent of {route}",
  rollback: "Roll {route} back to legacy (held until resumed)",
  resume: "Lift the hold on {route} (it then follows the file through its gates)",
  create: "Create a route for {route} (stage legacy)",
};

function open(action, route, extra) {
  form.reset();
  form.elements.route.value = route;
  form.elements.action.value = action;
  form.dataset.method = extra.method || "";
  form.dataset.template = extra.template || "";
  document.getElementById("act-title").textContent = titles[action].replace("{route}", route);
  document.getElementById("act-percent-row").hidden = action !== "percent";
  form.elements.force.parentElement.hidden = action === "create" || action === "resume";
  result.textContent = "";
  dialog.showModal();
}

main.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  if (b.dataset.act === "create") {
    open("create", b.dataset.method + " " + b.dataset.template, b.dataset);
  } else {
    open(b.dataset.act, b.dataset.route, {});
  }
});
document.getElementById("act-close").addEventListener("click", () => dialog.close());

function request(action, route, reason, force, percent) {
  const enc = encodeURIComponent(route);
  switch (action) {
    case "promote":
      return ["POST", "/ui/api/routes/" + enc + "/promote", { reason, force }];
    case "percent":
      return ["PUT", "/ui/api/routes/" + enc, { stage: "canary", percent, reason, force }];
    case "rollback":
      return ["POST", "/ui/api/routes/" + enc + "/rollback", { reason, force }];
    case "resume":
      return ["POST", "/ui/api/routes/" + enc + "/resume", { reason }];
    case "create":
      return ["POST", "/ui/api/inventory/routes", { method: form.dataset.method, template: form.dataset.template, reason }];
  }
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = form.elements;
  const reason = f.reason.value.trim();
  const force = f.force.checked;
  if (force && !reason) { result.textContent = "A forced move needs a reason."; return; }
  const [method, url, body] = request(f.action.value, f.route.value, reason, force, Number(f.percent.value));
  busy = true;
  try {
    const resp = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-strangler-ui": "1" },
      body: JSON.stringify(body),
    });
    const answer = await resp.json().catch(() => ({}));
    if (resp.ok) {
      result.textContent = "Done" + (answer.audit ? ": " + answer.audit.before.stage + " → " + answer.audit.after.stage : "") + ".";
      result.className = "ok";
    } else {
      const gates = (answer.gates || []).filter((g) => !g.ok).map((g) => "• " + g.name + ": " + g.detail);
      result.textContent = "Refused (" + resp.status + "): " + (answer.error || resp.statusText) + (gates.length ? "\n" + gates.join("\n") : "");
      result.className = "blocked";
    }
  } catch (e) {
    result.textContent = "The admin API did not answer: " + e;
    result.className = "blocked";
  } finally {
    busy = false;
    refresh();
  }
});
