// emwatch service worker: shows a pushed alert as a notification; a click opens the page at that alert.
// Served as /sw.js so that its scope is the whole page; it fetches nothing and imports nothing.
"use strict";

const KINDS = { alert: "告警 Alert", confirmed: "告警确认 Confirmed", escalated: "告警升级 Escalated" };

self.addEventListener("install", (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// The push payload is the feed's wire shape of one alert event (docs/protocol.md).
function notificationOf(m) {
  const kind = KINDS[m.type] || m.type;
  const where = m.escalated_to ? ` → ${m.escalated_to}` : "";
  return {
    title: `[${m.severity}] ${kind}: ${m.rule}`,
    options: {
      body: `#${m.id} · ${m.subject_id}${where} · ${new Date(m.ts).toLocaleString()}`,
      tag: `alert-${m.id}`,  // one notification per alert: an escalation replaces the first one...
      renotify: true,        // ...and still alerts the officer again
      requireInteraction: m.severity === "critical",
      timestamp: m.ts,
      data: { id: m.id, url: `/#alert=${m.id}` },
    },
  };
}

self.addEventListener("push", (event) => {
  let message = null;
  try { message = event.data ? event.data.json() : null; } catch (_) { /* not JSON: say something anyway */ }
  // userVisibleOnly: every push must show a notification, even one we cannot read.
  const n = message && message.id ? notificationOf(message)
    : { title: "emwatch", options: { body: "新告警 New alert", data: { url: "/" } } };
  event.waitUntil(self.registration.showNotification(n.title, n.options));
});

// Bring the page to the alert: an open page is told to show it and focused; else a new one opens at it.
async function openAlert(data) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const page = windows.find((w) => new URL(w.url).origin === self.location.origin);
  if (page) {
    page.postMessage({ type: "open-alert", id: data.id });
    try { await page.focus(); } catch (_) { /* only allowed from a click; the page got the message */ }
    return page;
  }
  return self.clients.openWindow(new URL(data.url || "/", self.registration.scope).href);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const opening = openAlert(event.notification.data || {});  // started before waitUntil may throw
  event.waitUntil(opening);
});
