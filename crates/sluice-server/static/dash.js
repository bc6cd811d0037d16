// sluice dashboard: keeps the live parts of a page ([data-live] elements
// with an id) up to date by fetching the page's own URL every few seconds
// and swapping those parts in. Forms are never inside them, so what a user
// types survives. When the rollout's state changes (paused by a gate, say)
// the page reloads so that the action buttons match, unless the user is
// typing a reason. A page holding a document rather than a live view
// ([data-still], the rollout's report, whose making costs a simulation) is
// not refreshed.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  var live = document.querySelectorAll("[data-live][id]");
  if (live.length === 0 || document.querySelector("[data-still]")) {
    return;
  }
  function stateOf(root) {
    var element = root.querySelector("[data-state]");
    return element ? element.getAttribute("data-state") : null;
  }
  var initialState = stateOf(document);
  var busy = false;

  function typing() {
    var active = document.activeElement;
    if (active && active.form && active.value) {
      return true;
    }
    var reason = document.getElementById("reason");
    return Boolean(reason && reason.value);
  }

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      cache: "no-store",
      redirect: "manual"
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        live.forEach(function (element) {
          var replacement = fresh.getElementById(element.id);
          if (replacement) {
            element.innerHTML = replacement.innerHTML;
          }
        });
        document.documentElement.removeAttribute("data-stale");
        var state = stateOf(document);
        if (initialState !== null && state !== initialState && !typing()) {
          window.location.reload();
        }
      })
      .catch(function () {
        document.documentElement.setAttribute("data-stale", "true");
      })
      .then(function () {
        busy = false;
      });
  }
  window.setInterval(refresh, PERIOD_MS);
})();
