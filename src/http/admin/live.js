// MCSS admin: keeps the live parts of a page current without a reload.
//
// Every element marked data-live="name" is replaced, every 2 seconds while the tab is
// visible, by the element of the same name in a fresh copy of this very page (the server
// renders both the same way). Nothing else on the page is touched, so forms keep what the
// operator typed. Without JavaScript the page is the same, only still.
(function () {
  "use strict";
  if (!document.querySelector("[data-live]")) return;
  var status = document.getElementById("live-status");
  var stamp = document.getElementById("rendered-at");
  var busy = false;

  function note(text, bad) {
    if (!status) return;
    status.textContent = text;
    status.className = bad ? "error" : "muted";
  }

  function apply(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (region) {
      var name = region.getAttribute("data-live");
      var next = fresh.querySelector('[data-live="' + name + '"]');
      if (!next || next.innerHTML === region.innerHTML) return;
      // Do not pull a button away from under the operator's keyboard focus.
      if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
      region.innerHTML = next.innerHTML;
    });
    var at = fresh.getElementById("rendered-at");
    if (stamp && at) stamp.textContent = at.textContent;
    note("Updates by itself.", false);
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected && new URL(r.url).pathname === "/admin/login") {
          throw new Error("you were signed out; reload the page to sign in again");
        }
        if (!r.ok) throw new Error("the service answered " + r.status);
        return r.text();
      })
      .then(apply)
      .catch(function (e) {
        note("Not updating: " + (e && e.message ? e.message : "the service cannot be reached") + ".", true);
      })
      .then(function () { busy = false; });
  }

  note("Updates by itself.", false);
  setInterval(refresh, 2000);
})();
