/* Airlock dashboard: the live parts of server-rendered pages.
 * - Countdowns tick every second (server time, corrected for this browser's clock).
 * - Server-Sent Events (/api/stream) name a message that changed; its card is re-fetched as
 *   HTML (/fragments/card/:id) and swapped in, so every rule stays on the server.
 * - EventSource reconnects by itself (the server asks for 2 s); after a reconnect the list is
 *   re-read, since events sent meanwhile are lost. On the first connection the cards going out now
 *   are re-read once: an event between the page's rendering and the stream's opening is lost too
 *   (a staged send's last wave can finish in that moment).
 * Without this script every page still works: it is just not live.
 */
(function () {
  "use strict";

  var serverTime = Number(document.querySelector('meta[name="server-time"]')?.getAttribute("content"));
  var skew = Number.isFinite(serverTime) ? serverTime - Date.now() : 0;
  var now = function () { return Date.now() + skew; };

  /* Mirrors countdown() in src/http/dashboard/view-model.ts. */
  function countdown(ms) {
    if (ms <= 0) return "now";
    var s = Math.ceil(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var u = function (n, w) { return n + " " + w + (n === 1 ? "" : "s"); };
    if (d > 0) return "in " + u(d, "day") + (h ? " " + u(h, "hour") : "");
    if (h > 0) return "in " + u(h, "hour") + (m ? " " + u(m, "minute") : "");
    if (m > 0) return "in " + u(m, "minute") + (sec ? " " + u(sec, "second") : "");
    return "in " + u(sec, "second");
  }

  function tick() {
    var els = document.querySelectorAll("[data-countdown]");
    for (var i = 0; i < els.length; i++) {
      var at = Date.parse(els[i].getAttribute("data-countdown"));
      if (!Number.isFinite(at)) continue;
      var text = countdown(at - now());
      if (els[i].textContent !== text) els[i].textContent = text;
    }
  }
  tick();
  setInterval(tick, 1000);

  var list = document.querySelector("[data-live-list]");
  var status = document.getElementById("live-status");
  var announcer = document.getElementById("announcer");
  if (!list || typeof EventSource === "undefined") return;
  var kind = list.getAttribute("data-live-list");

  function say(text) {
    if (announcer) announcer.textContent = text;
  }

  function cardOf(id) {
    return list.querySelector('[data-message="' + CSS.escape(id) + '"]');
  }

  function place(card) {
    var rank = Number(card.getAttribute("data-rank"));
    var release = Date.parse(card.getAttribute("data-release-at") || "") || Infinity;
    var cards = list.querySelectorAll("[data-message]");
    for (var i = 0; i < cards.length; i++) {
      var r = Number(cards[i].getAttribute("data-rank"));
      var rel = Date.parse(cards[i].getAttribute("data-release-at") || "") || Infinity;
      if (rank < r || (rank === r && release < rel)) return list.insertBefore(card, cards[i]);
    }
    list.appendChild(card);
  }

  /* Swaps a card for its new version, keeping keyboard focus on the same control. */
  function swap(old, fresh) {
    var focused = old.contains(document.activeElement) ? document.activeElement : null;
    var key = focused ? focused.getAttribute("href") || focused.getAttribute("data-field") : null;
    old.replaceWith(fresh);
    if (key) {
      var again = fresh.querySelector('[href="' + CSS.escape(key) + '"], [data-field="' + CSS.escape(key) + '"]');
      if (again) again.focus();
    }
    if (old.getAttribute("data-state") !== fresh.getAttribute("data-state")) {
      var title = fresh.querySelector("h3");
      var label = fresh.querySelector('[data-field="stateLabel"]');
      say((title ? title.textContent : "A message") + ": " + (label ? label.textContent : fresh.getAttribute("data-state")));
    }
  }

  var inflight = {};
  var again = {};
  /* At most one fetch per card at a time; events arriving meanwhile ask for one more afterwards. */
  function refresh(id) {
    if (inflight[id]) { again[id] = true; return; }
    inflight[id] = true;
    fetch("/fragments/card/" + encodeURIComponent(id), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) {
        if (res.status === 404) { var gone = cardOf(id); if (gone) gone.remove(); return null; }
        if (res.status === 401 || res.redirected) { location.reload(); return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var t = document.createElement("template");
        t.innerHTML = html.trim();
        var fresh = t.content.firstElementChild;
        if (!fresh) return;
        var old = cardOf(id);
        if (old) swap(old, fresh);
        else if (kind === "pending" && fresh.getAttribute("data-rank") !== "4") { place(fresh); say("New: " + (fresh.querySelector("h3") || fresh).textContent); }
        tick();
        var empty = document.getElementById("pending-empty");
        if (empty) empty.hidden = list.querySelector("[data-message]") !== null;
      })
      .catch(function () { /* the next event or the reconnect brings it */ })
      .finally(function () {
        inflight[id] = false;
        if (again[id]) { again[id] = false; refresh(id); }
      });
  }

  function refreshAll() {
    var cards = list.querySelectorAll("[data-message]");
    for (var i = 0; i < cards.length; i++) refresh(cards[i].getAttribute("data-message"));
    if (kind !== "pending") return;
    /* Messages submitted while we were disconnected: read the list again. */
    fetch("/", { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelectorAll("[data-live-list] [data-message]");
        for (var i = 0; i < fresh.length; i++) {
          var id = fresh[i].getAttribute("data-message");
          if (!cardOf(id)) place(document.importNode(fresh[i], true));
        }
        tick();
      })
      .catch(function () {});
  }

  /* The cards whose numbers move by themselves (a fan-out or a correction going out). */
  function refreshLive() {
    var cards = list.querySelectorAll('[data-message][data-state="sending"], [data-message][data-state="correcting"]');
    for (var i = 0; i < cards.length; i++) refresh(cards[i].getAttribute("data-message"));
  }

  function onEvent(e) {
    var data;
    try { data = JSON.parse(e.data); } catch (_) { return; }
    if (!data || typeof data.id !== "string") return;
    if (kind === "message" && !cardOf(data.id)) return;
    refresh(data.id);
  }

  var lostOnce = false;
  var source = new EventSource("/api/stream");
  ["state", "approval", "progress"].forEach(function (k) { source.addEventListener(k, onEvent); });
  source.addEventListener("open", function () {
    if (status) { status.textContent = "● Live"; status.classList.remove("offline"); }
    if (lostOnce) refreshAll();
    else refreshLive();
  });
  source.addEventListener("error", function () {
    lostOnce = true;
    if (status) { status.textContent = "Reconnecting…"; status.classList.add("offline"); }
  });
})();
