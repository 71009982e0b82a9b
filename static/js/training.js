/* Faro: follow a training job live on its page.
 *
 * Progressive enhancement of the job's page: without this script the page refreshes itself (a <noscript>
 * meta refresh) until the job ends. With it, the job's JSON status from the API is polled every second
 * (the staff session authenticates the request) and drives the status, the progress bar, the attempt
 * count and the table of hyperparameter-search trials. When the job ends the page is reloaded once, to
 * show the registered version or the error. The cancel form is posted in the background.
 */
(function () {
  "use strict";

  var FINISHED = window.faroDom.FINISHED;
  var STATUS_TEXT = {
    queued: "Queued",
    running: "Running",
    succeeded: "Succeeded",
    failed: "Failed",
    cancelled: "Cancelled",
  };

  var el = window.faroDom.el;

  function formatScore(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
  }

  function trialRow(trial) {
    var params = el("td");
    Object.keys(trial.params || {})
      .sort()
      .forEach(function (key) {
        params.appendChild(el("code", { text: key + "=" + trial.params[key] }));
        params.appendChild(document.createTextNode(" "));
      });
    var best = trial.best_iteration;
    return el("tr", {}, [
      el("td", { class: "num", text: String(trial.number) }),
      params,
      el("td", { class: "num", text: formatScore(trial.score) }),
      el("td", { text: trial.state || "" }),
      el("td", { class: "num", text: best === null || best === undefined ? "—" : String(best) }),
    ]);
  }

  function init(card) {
    var statusUrl = card.getAttribute("data-status-url");
    var status = card.querySelector('[data-testid="status"]');
    var percent = card.querySelector('[data-field="percent"]');
    var attempts = card.querySelector('[data-field="attempts"]');
    var cancelState = card.querySelector('[data-field="cancel"]');
    var bar = card.querySelector('[data-field="bar"]');
    var cancelForm = document.getElementById("cancel-form");
    var trials = document.getElementById("trials");
    var trialBody = trials && trials.querySelector('[data-field="trials"]');
    var trialCount = trials && trials.querySelector('[data-field="trial-count"]');
    var shownTrials = trialBody ? trialBody.children.length : 0;

    function show(job) {
      var fraction = Math.max(0, Math.min(1, job.progress || 0));
      var value = Math.round(fraction * 100);
      status.textContent = STATUS_TEXT[job.status] || job.status;
      status.className = "status " + job.status;
      percent.textContent = value + " %";
      bar.firstElementChild.style.width = value + "%";
      bar.setAttribute("aria-valuenow", String(value));
      bar.classList.toggle("failed", job.status === "failed");
      attempts.textContent = String(job.attempts || 0);
      var cancelling = !!job.cancel_requested_at && FINISHED.indexOf(job.status) < 0;
      cancelState.hidden = !cancelling;
      if (cancelForm && (cancelling || FINISHED.indexOf(job.status) >= 0)) cancelForm.hidden = true;
      var list = job.trials || [];
      if (trials && list.length !== shownTrials) {
        trials.hidden = false;
        trialBody.replaceChildren.apply(trialBody, list.map(trialRow));
        trialCount.textContent = String(list.length);
        shownTrials = list.length;
      }
    }

    window.faroDom.followJob(statusUrl, cancelForm, show);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var card = document.getElementById("training-job");
    if (card && card.getAttribute("data-finished") !== "true" && window.fetch) init(card);
  });
})();
