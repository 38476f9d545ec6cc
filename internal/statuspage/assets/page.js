// dsrd status page: polls status.json and updates the page in place. The
// page is complete without this script (it only refreshes it); when the
// services or reals change shape, the page is reloaded instead.
"use strict";
(function () {
  var body = document.body;
  var every = parseInt(body.getAttribute("data-poll"), 10) || 5000;
  var live = document.getElementById("live");

  function text(el, v) { if (el && el.textContent !== String(v)) { el.textContent = String(v); } }
  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function cls(el, c) { if (el) { el.className = c; } }

  function spark(samples) {
    var max = 1;
    samples.forEach(function (s) { if (s.active > max) { max = s.active; } });
    var step = samples.length > 1 ? 120 / (samples.length - 1) : 0;
    return samples.map(function (s, i) {
      return (i * step).toFixed(1) + "," + (23 - (s.active / max) * 22).toFixed(1);
    }).join(" ");
  }

  function shapeOf(st) {
    return (st.services || []).map(function (s) {
      return s.key + ":" + (s.reals || []).map(function (r) { return r.key; }).join(",");
    }).join(";");
  }
  var shown = Array.prototype.map.call(document.querySelectorAll("[data-service]"), function (a) {
    return a.getAttribute("data-service") + ":" + Array.prototype.map.call(a.querySelectorAll("[data-real]"), function (r) {
      return r.getAttribute("data-real");
    }).join(",");
  }).join(";");

  function apply(v) {
    if (shapeOf(v) !== shown) { window.location.reload(); return; }
    text(document.getElementById("read-at"), v.at_text);
    text(field(document, "raft-state"), v.raft.state);
    text(field(document, "raft-term"), v.raft.term);
    text(field(document, "raft-leader"), v.raft.leader_id || "none");
    (v.services || []).forEach(function (s) {
      var a = document.querySelector('[data-service="' + s.key + '"]');
      if (!a) { return; }
      var state = field(a, "service-state");
      text(state, s.state); cls(state, s.class);
      text(field(a, "service-healthy"), s.healthy);
      s.reals.forEach(function (r) {
        var row = a.querySelector('[data-real="' + r.key + '"]');
        if (!row) { return; }
        var h = field(row, "health");
        text(h, r.health); cls(h, r.health_class);
        text(field(row, "weight"), r.weight);
        text(field(row, "active"), r.active);
        text(field(row, "inactive"), r.inactive);
        text(field(row, "rate"), r.rate);
        var p = field(row, "spark");
        if (p) { p.setAttribute("points", spark(r.samples || [])); }
      });
    });
    var list = document.getElementById("events");
    if (list) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      (v.events || []).forEach(function (e) {
        var li = document.createElement("li");
        if (e.warn) { li.className = "warn"; }
        var t = document.createElement("time");
        t.setAttribute("datetime", e.at);
        t.textContent = e.at_text;
        var k = document.createElement("span");
        k.className = "kind";
        k.textContent = e.kind;
        li.appendChild(t);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(k);
        li.appendChild(document.createTextNode(" " + e.text));
        list.appendChild(li);
      });
    }
  }

  function poll() {
    fetch("view.json", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error(r.status + " " + r.statusText); }
      return r.json();
    }).then(function (v) {
      apply(v);
      text(live, "live, every " + every / 1000 + " s");
    }).catch(function (e) {
      text(live, "not refreshed: " + e.message);
    }).then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
})();
