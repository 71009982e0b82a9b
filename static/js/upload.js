/* Faro: upload a dataset file with live progress, then follow its ingest job until it ends.
 *
 * Progressive enhancement of the upload form on a dataset's page: without this script the form posts
 * normally and the server redirects to the job's page. With it, the file (chosen or dropped) is sent by
 * XMLHttpRequest, whose upload progress drives the first bar; the job's JSON status is then polled every
 * 500 ms and drives the second bar, until a link to the new version or the list of problems is shown.
 */
(function () {
  "use strict";

  var POLL_MS = 500;
  var MAX_POLL_FAILURES = 10;

  function formatBytes(bytes) {
    if (bytes < 1024) return bytes + " B";
    var units = ["KB", "MB", "GB", "TB"];
    var value = bytes;
    var unit = -1;
    do {
      value /= 1024;
      unit += 1;
    } while (value >= 1024 && unit < units.length - 1);
    return value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].trim();
      if (part.indexOf(name + "=") === 0) return decodeURIComponent(part.slice(name.length + 1));
    }
    return "";
  }

  var el = window.faroDom.el;

  function setBar(bar, fraction) {
    var percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.firstElementChild.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
    bar.classList.remove("indeterminate");
  }

  function problemTable(problems) {
    var body = el("tbody");
    problems.forEach(function (problem) {
      var message = problem.message || "";
      if (problem.count && problem.count > 1) {
        message += " (" + problem.count + " rows" + (problem.rows && problem.rows.length ? ", first: " + problem.rows.join(", ") : "") + ")";
      }
      body.appendChild(
        el("tr", {}, [
          el("td", { text: problem.row === null || problem.row === undefined ? "—" : String(problem.row) }),
          el("td", {}, [problem.column ? el("code", { text: String(problem.column) }) : "—"]),
          el("td", { text: message }),
        ])
      );
    });
    return el("table", { class: "problems" }, [
      el("caption", { text: problems.length + (problems.length === 1 ? " problem" : " problems") }),
      el("thead", {}, [
        el("tr", {}, [el("th", { scope: "col", text: "Row" }), el("th", { scope: "col", text: "Column" }), el("th", { scope: "col", text: "Problem" })]),
      ]),
      body,
    ]);
  }

  function fieldProblems(fields) {
    var list = el("ul", { class: "errorlist" });
    Object.keys(fields || {}).forEach(function (name) {
      [].concat(fields[name]).forEach(function (message) {
        list.appendChild(el("li", { text: (name === "__all__" ? "" : name + ": ") + message }));
      });
    });
    return list.children.length ? list : null;
  }

  function init(form) {
    var input = form.querySelector('input[type="file"]');
    var zone = form.querySelector("#dropzone");
    var chosen = form.querySelector("#chosen-file");
    var submit = form.querySelector("#upload-submit");
    var cancel = form.querySelector("#upload-cancel");
    var panel = form.querySelector("#upload-progress");
    var sendBar = form.querySelector("#send-bar");
    var sendText = form.querySelector("#send-text");
    var ingestBar = form.querySelector("#ingest-bar");
    var ingestText = form.querySelector("#ingest-text");
    var result = form.querySelector("#upload-result");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
    var xhr = null;
    var pollTimer = null;

    form.classList.add("enhanced");

    function showChosen() {
      var file = input.files && input.files[0];
      chosen.textContent = file ? "Chosen: " + file.name + " (" + formatBytes(file.size) + ")" : "";
      zone.classList.toggle("has-file", !!file);
    }

    function busy(on) {
      submit.disabled = on;
      input.disabled = on;
      cancel.hidden = !on;
      form.classList.toggle("busy", on);
    }

    function fail(message, detail) {
      result.replaceChildren();
      var box = el("div", { class: "alert error", role: "alert" }, [el("p", { text: message })]);
      if (detail) box.appendChild(detail);
      result.appendChild(box);
    }

    // -- choosing and dropping -----------------------------------------------------------------------
    input.addEventListener("change", showChosen);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      var files = event.dataTransfer && event.dataTransfer.files;
      if (!files || !files.length) return;
      if (files.length > 1) {
        chosen.textContent = "Drop one file at a time.";
        return;
      }
      input.files = files;
      showChosen();
    });
    // A file dropped next to the zone would make the browser navigate away to show it.
    window.addEventListener("dragover", function (event) { event.preventDefault(); });
    window.addEventListener("drop", function (event) { event.preventDefault(); });

    // -- following the job ---------------------------------------------------------------------------
    // The page's own lists of versions and uploads, fetched again once a job ends.
    function refreshLists() {
      var request = new XMLHttpRequest();
      request.open("GET", window.location.pathname);
      request.responseType = "document";
      request.onload = function () {
        if (request.status !== 200 || !request.response) return;
        ["versions", "jobs"].forEach(function (id) {
          var fresh = request.response.getElementById(id);
          var current = document.getElementById(id);
          if (fresh && current) current.replaceWith(document.importNode(fresh, true));
        });
      };
      request.send();
    }

    function poll(statusUrl, pageUrl, failures) {
      var request = new XMLHttpRequest();
      request.open("GET", statusUrl);
      request.setRequestHeader("Accept", "application/json");
      request.responseType = "json";
      request.onload = function () {
        var job = request.response;
        if (request.status !== 200 || !job || typeof job !== "object") {
          retry(statusUrl, pageUrl, failures + 1);
          return;
        }
        setBar(ingestBar, job.progress || 0);
        ingestText.textContent = job.status_display + (job.status === "running" ? ", " + Math.round((job.progress || 0) * 100) + "%" : "");
        if (!job.finished) {
          pollTimer = setTimeout(function () { poll(statusUrl, pageUrl, 0); }, POLL_MS);
          return;
        }
        busy(false);
        refreshLists();
        result.replaceChildren();
        if (job.status === "succeeded") {
          setBar(ingestBar, 1);
          result.appendChild(
            el("div", { class: "alert success", role: "status" }, [
              el("p", {}, [
                "Version " + job.version + " created. ",
                el("a", { class: "button", href: job.version_url, text: "Open the validation report of v" + job.version }),
              ]),
            ])
          );
          input.value = "";
          showChosen();
        } else {
          ingestBar.classList.add("failed");
          var detail = job.problems && job.problems.length ? problemTable(job.problems) : null;
          fail(job.error || "The upload failed.", detail);
          result.appendChild(el("p", { class: "help" }, [el("a", { href: pageUrl, text: "Upload #" + job.id + " on its own page" })]));
        }
      };
      request.onerror = function () { retry(statusUrl, pageUrl, failures + 1); };
      request.send();
    }

    function retry(statusUrl, pageUrl, failures) {
      if (failures >= MAX_POLL_FAILURES) {
        busy(false);
        fail("Lost track of the upload's progress.", el("p", {}, [el("a", { href: pageUrl, text: "Follow it on its own page" })]));
        return;
      }
      pollTimer = setTimeout(function () { poll(statusUrl, pageUrl, failures); }, POLL_MS * (failures + 1));
    }

    // -- sending -------------------------------------------------------------------------------------
    cancel.addEventListener("click", function () {
      if (xhr) xhr.abort();
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = input.files && input.files[0];
      result.replaceChildren();
      if (!file) {
        fail("Choose or drop a file first.");
        input.focus();
        return;
      }
      if (maxBytes && file.size > maxBytes) {
        fail(file.name + " is " + formatBytes(file.size) + "; the limit is " + formatBytes(maxBytes) + ".");
        return;
      }
      clearTimeout(pollTimer);
      var data = new FormData(form);
      panel.hidden = false;
      setBar(sendBar, 0);
      setBar(ingestBar, 0);
      ingestBar.classList.remove("failed");
      sendText.textContent = "0 of " + formatBytes(file.size);
      ingestText.textContent = "waiting for the upload";
      busy(true);

      var request = (xhr = new XMLHttpRequest());
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", (form.querySelector('input[name="csrfmiddlewaretoken"]') || {}).value || cookie("csrftoken"));
      xhr.responseType = "json";
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          setBar(sendBar, e.loaded / e.total);
          sendText.textContent = formatBytes(Math.min(e.loaded, file.size)) + " of " + formatBytes(file.size) + " (" + Math.round((100 * e.loaded) / e.total) + "%)";
        } else {
          sendBar.classList.add("indeterminate");
          sendText.textContent = formatBytes(e.loaded) + " sent";
        }
      };
      xhr.upload.onload = function () {
        setBar(sendBar, 1);
        sendText.textContent = formatBytes(file.size) + " sent; the server is storing it";
      };
      xhr.onload = function () {
        var body = request.response;
        xhr = null;
        if (request.status === 202 && body && typeof body === "object" && body.status_url) {
          sendText.textContent = formatBytes(file.size) + " sent";
          ingestText.textContent = "Queued";
          poll(body.status_url, body.page_url, 0);
          return;
        }
        busy(false);
        if (body && typeof body === "object" && body.message) {
          var extra = body.extra || {};
          var detail = extra.problems && extra.problems.length ? problemTable(extra.problems) : fieldProblems(extra.fields);
          fail(body.message, detail);
        } else {
          fail("The upload was not accepted (HTTP " + request.status + "). Your session may have expired: reload the page and sign in again.");
        }
      };
      xhr.onerror = function () {
        xhr = null;
        busy(false);
        fail("The upload was interrupted: the connection failed. Try again.");
      };
      xhr.onabort = function () {
        xhr = null;
        busy(false);
        panel.hidden = true;
        fail("Upload cancelled.");
      };
      xhr.send(data);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (form && window.FormData && window.XMLHttpRequest) init(form);
  });
})();
