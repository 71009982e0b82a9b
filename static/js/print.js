/* Faro: buttons marked data-action="print" print the page. A file rather than an onclick attribute, which the
 * Content-Security-Policy refuses. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll('[data-action="print"]').forEach(function (button) {
      button.addEventListener("click", function () {
        window.print();
      });
    });
  });
})();
