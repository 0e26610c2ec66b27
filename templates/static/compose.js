/* Airlock compose page: what JavaScript adds to a form that works without it.
 * - Leaving the page with unsaved changes asks first (beforeunload).
 * - While typing, the preview follows the form: after a pause the form is posted, unsaved, to
 *   /compose/preview, which builds it as it would go out (the function the fan-out sends with) and
 *   answers the page; its audience counts, text part and digest replace ours, and the HTML part is
 *   the same post shown in the sandboxed frame. Every rule stays on the server.
 */
(function () {
  "use strict";

  var form = document.getElementById("compose-form");
  if (!form) return;
  var previewAction = form.getAttribute("data-preview-action");
  var frame = document.getElementById("preview-html");

  function snapshot() {
    var data = new URLSearchParams(new FormData(form));
    data.delete("_csrf");
    data.delete("revision");
    return data.toString();
  }

  var saved = snapshot();
  var leaving = false;
  form.addEventListener("submit", function () { leaving = true; });
  window.addEventListener("beforeunload", function (e) {
    if (leaving || snapshot() === saved) return;
    e.preventDefault();
    e.returnValue = "";
  });

  var timer = null;
  var seq = 0;
  function schedule() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, 700);
  }
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);

  function swapFrom(doc, id, text) {
    var fresh = doc.getElementById(id);
    var old = document.getElementById(id);
    if (!fresh || !old) return;
    if (text) { if (old.textContent !== fresh.textContent) old.textContent = fresh.textContent; }
    else if (old.innerHTML !== fresh.innerHTML) old.innerHTML = fresh.innerHTML;
  }

  function refresh() {
    timer = null;
    var mine = ++seq;
    var body = new URLSearchParams(new FormData(form));
    fetch(previewAction, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (!html || mine !== seq) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        swapFrom(doc, "audience-summary", false);
        swapFrom(doc, "preview-body", false);
        swapFrom(doc, "preview-text", true);
      })
      .catch(function () { /* the next pause tries again; saving still shows the preview */ });
    if (!frame) return;
    /* The HTML part: the same unsaved post, answered into the sandboxed frame (its own CSP). */
    var action = form.getAttribute("action");
    var target = form.getAttribute("target");
    form.setAttribute("action", previewAction + (previewAction.indexOf("?") < 0 ? "?" : "&") + "part=html");
    form.setAttribute("target", frame.getAttribute("name"));
    HTMLFormElement.prototype.submit.call(form);
    form.setAttribute("action", action);
    if (target === null) form.removeAttribute("target"); else form.setAttribute("target", target);
  }
})();
