// Placeholder UI script: shows the edge's health so an operator opening the
// site sees the stack is wired up. The real UI replaces this directory's output.
"use strict";

(function () {
  var el = document.getElementById("status");
  if (!el) {
    return;
  }
  fetch("/health", { headers: { Accept: "application/health+json" } })
    .then(function (res) {
      return res.json();
    })
    .then(function (body) {
      var status = body && typeof body.status === "string" ? body.status : "fail";
      el.className = status;
      el.textContent = "Edge health: " + status;
    })
    .catch(function () {
      el.className = "fail";
      el.textContent = "Edge health: unreachable";
    });
})();
