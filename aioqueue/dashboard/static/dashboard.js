// aioqueue dashboard: refresh the page's main section while the tab is
// visible, one request at a time (the next is scheduled after the reply), so
// a slow server is never asked twice at once. No job data is written as
// HTML here: the server renders (and escapes) it, and the parsed nodes are
// moved in as they are.
(function () {
  "use strict";
  var seconds = Number(document.body.dataset.refresh || "0");
  if (!seconds) {
    return;
  }
  function busy() {
    var active = document.activeElement;
    return active && (active.tagName === "INPUT" || active.tagName === "BUTTON") &&
      active.type !== "submit";
  }
  function schedule() {
    window.setTimeout(refresh, seconds * 1000);
  }
  function refresh() {
    if (document.hidden || busy()) {
      schedule();
      return;
    }
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        var current = document.getElementById("main");
        if (fresh && current) {
          var open = Array.prototype.map.call(current.querySelectorAll("details[open]"),
            function (d) { return d.querySelector("summary") && d.querySelector("summary").textContent; });
          current.replaceWith(document.adoptNode(fresh));
          Array.prototype.forEach.call(fresh.querySelectorAll("details"), function (d) {
            var s = d.querySelector("summary");
            if (s && open.indexOf(s.textContent) >= 0) { d.open = true; }
          });
        }
      })
      .catch(function () { /* keep the page as it is; try again later */ })
      .then(schedule);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); }
  });
  schedule();
})();
