"use strict";
(function () {
  var body = document.body;
  var live = document.getElementById("live");
  var polls = 0;
  var every = Number(body.getAttribute("data-poll")) || 3000;
  body.setAttribute("data-loaded-at", String(Date.now()));
  function note(text) {
    if (live) live.textContent = text;
  }
  function poll() {
    var url = live && live.getAttribute("data-live");
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) {
          note("signed out: reload the page to sign in again");
          throw new Error("401");
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (j) {
        var changed = 0;
        var versions = j.versions || {};
        Object.keys(j.fragments || {}).forEach(function (id) {
          var el = document.getElementById(id);
          if (el && el.getAttribute("data-v") !== versions[id]) {
            el.innerHTML = j.fragments[id];
            el.setAttribute("data-v", versions[id]);
            changed++;
          }
        });
        polls++;
        body.setAttribute("data-polls", String(polls));
        if (changed) body.setAttribute("data-updates", String(Number(body.getAttribute("data-updates") || 0) + changed));
        note("live: updated " + new Date().toLocaleTimeString() + ", every " + every / 1000 + " s");
        setTimeout(poll, every);
      })
      .catch(function (e) {
        if (String(e.message) !== "401") {
          note("live: " + e.message + "; trying again");
          setTimeout(poll, every);
        }
      });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-action]");
    if (!b) return;
    var action = b.getAttribute("data-action");
    var out = document.getElementById("action-result");
    var payload = action === "abort" ? JSON.stringify({ reason: "aborted from the vigil dashboard" }) : "";
    b.disabled = true;
    fetch(b.getAttribute("data-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: payload
    })
      .then(function (r) {
        return r.json().then(function (j) {
          return { status: r.status, j: j };
        });
      })
      .then(function (r) {
        if (out) {
          out.textContent =
            r.status === 202 ? action + ": requested" : action + " refused (" + r.status + "): " + (r.j.error || "");
          out.setAttribute("data-status", String(r.status));
        }
      })
      .catch(function (e) {
        if (out) out.textContent = action + " failed: " + e.message;
      })
      .then(function () {
        b.disabled = false;
      });
  });
  var filters = document.getElementById("filters");
  if (filters) {
    filters.addEventListener("change", function () {
      filters.submit();
    });
  }
  setTimeout(poll, every);
})();
