// Confirmation pages (/links/:token): the only behaviour is preventing a double POST. Once a form
// has been submitted its submit button is disabled and a second submit is ignored. Nothing runs
// on load, nothing is ever submitted from here; the page works the same without this file.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || event.defaultPrevented) return;
  if (form.dataset.submitted === "true") {
    event.preventDefault();
    return;
  }
  form.dataset.submitted = "true";
  // After the event: the submission in progress is left exactly as the browser built it.
  setTimeout(() => {
    for (const button of form.querySelectorAll('button[type="submit"]')) button.disabled = true;
  }, 0);
});

// Back/forward cache: a page restored after the POST gets its form back as it was.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const form of document.querySelectorAll('form[data-submitted="true"]')) {
    delete form.dataset.submitted;
    for (const button of form.querySelectorAll('button[type="submit"]')) button.disabled = false;
  }
});
