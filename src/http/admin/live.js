// MCSS admin live view: polls /admin/api/live every 2 s and fills the tables.
(function () {
  "use strict";
  function text(id, value) { document.getElementById(id).textContent = value; }
  function ms(v) { return v === null || v === undefined ? "—" : v + " ms"; }
  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c, i) {
      var td = document.createElement("td");
      if (i > 0 && (typeof c === "number" || String(c).endsWith(" ms"))) td.className = "num";
      td.textContent = c;
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(id, rows) {
    var body = document.getElementById(id);
    body.replaceChildren.apply(body, rows);
  }
  function refresh() {
    fetch("/admin/api/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) {
        document.getElementById("live-error").hidden = true;
        text("pending-total", d.pending_total);
        text("latency-p50", ms(d.latency.p50_ms));
        text("latency-p95", ms(d.latency.p95_ms));
        text("latency-count", d.latency.samples);
        fill("queue", d.queue.map(function (q) { return row([q.alias, q.pending]); }));
        fill("recent", d.latency.recent.map(function (s) {
          return row([new Date(s.at).toLocaleTimeString(), s.alias, ms(s.ms), s.writes]);
        }));
      })
      .catch(function () { document.getElementById("live-error").hidden = false; });
  }
  refresh();
  setInterval(refresh, 2000);
})();
