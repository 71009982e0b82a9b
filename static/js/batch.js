/* Faro: follow a batch scoring job live on its page.
 *
 * Progressive enhancement of the job's page: without this script the page refreshes itself (a <noscript>
 * meta refresh) until the job ends. With it, the job's JSON status from the API is polled every second
 * (the staff session authenticates the request) and drives the status, the progress bar, the rows scored
 * and the attempt count. When the job ends the page is reloaded once, to show the download or the error.
 * The cancel form is posted in the background.
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

  function count(value) {
    return Number(value || 0).toLocaleString();
  }

  function init(card) {
    var statusUrl = card.getAttribute("data-status-url");
    var status = card.querySelector('[data-testid="status"]');
    var percent = card.querySelector('[data-field="percent"]');
    var rows = card.querySelector('[data-field="rows"]');
    var attempts = card.querySelector('[data-field="attempts"]');
    var cancelState = card.querySelector('[data-field="cancel"]');
    var bar = card.querySelector('[data-field="bar"]');
    var cancelForm = document.getElementById("cancel-form");

    function show(job) {
      var fraction = Math.max(0, Math.min(1, job.progress || 0));
      var value = Math.round(fraction * 100);
      status.textContent = STATUS_TEXT[job.status] || job.status;
      status.className = "status " + job.status;
      percent.textContent = value + " %";
      rows.textContent = count(job.rows_done) + " of " + count(job.rows_total);
      bar.firstElementChild.style.width = value + "%";
      bar.setAttribute("aria-valuenow", String(value));
      bar.classList.toggle("failed", job.status === "failed");
      attempts.textContent = String(job.attempts || 0);
      var cancelling = !!job.cancel_requested_at && FINISHED.indexOf(job.status) < 0;
      cancelState.hidden = !cancelling;
      if (cancelForm && (cancelling || FINISHED.indexOf(job.status) >= 0)) cancelForm.hidden = true;
    }

    window.faroDom.followJob(statusUrl, cancelForm, show);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var card = document.getElementById("batch-job");
    if (card && card.getAttribute("data-finished") !== "true" && window.fetch) init(card);
  });
})();
