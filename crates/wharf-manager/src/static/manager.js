// The Manager's only script: asks before a destructive form is sent, and selects a
// secret shown once (a new token, a one-time-code secret) for copying.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("DOMContentLoaded", () => {
  for (const secret of document.querySelectorAll(".secret")) {
    secret.addEventListener("click", () => {
      const range = document.createRange();
      range.selectNodeContents(secret);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    });
  }
});
