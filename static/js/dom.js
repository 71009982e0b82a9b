/* Faro: the helpers the page scripts share. Load it before them. */
(function () {
  "use strict";

  /* An element with attributes ("text" sets its text) and children (nodes or strings). */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var POLL_MS = 1000;
  var MAX_POLL_FAILURES = 10;
  var FINISHED = ["succeeded", "failed", "cancelled"];

  /* Follow a job on its page: poll its JSON status every second and hand it to `show`; reload the page
   * once the job ends (the server-rendered page shows the result), or after too many failed polls (the
   * page still knows the state). The cancel form, if any, is posted in the background. */
  function followJob(statusUrl, cancelForm, show) {
    var timer = null;

    function poll(failures) {
      fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (job) {
          show(job);
          if (FINISHED.indexOf(job.status) >= 0) {
            window.location.reload();
            return;
          }
          timer = setTimeout(function () { poll(0); }, POLL_MS);
        })
        .catch(function () {
          if (failures + 1 >= MAX_POLL_FAILURES) {
            window.location.reload();
            return;
          }
          timer = setTimeout(function () { poll(failures + 1); }, POLL_MS * (failures + 2));
        });
    }

    if (cancelForm && window.FormData) {
      cancelForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = cancelForm.querySelector("button");
        button.disabled = true;
        fetch(cancelForm.action, { method: "POST", body: new FormData(cancelForm), credentials: "same-origin" })
          .then(function (response) {
            if (!response.ok) throw new Error("HTTP " + response.status);
            clearTimeout(timer);
            poll(0);
          })
          .catch(function () {
            cancelForm.submit();
          });
      });
    }

    poll(0);
  }

  window.faroDom = { el: el, followJob: followJob, FINISHED: FINISHED };
})();
