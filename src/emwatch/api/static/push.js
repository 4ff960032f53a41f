// Push notifications on this device: the service worker, the enable/disable button, and opening the
// alert a notification was about. Loaded after app.js, whose api(), select(), S and $ it uses.
"use strict";

const PUSH = { pendingAlert: alertInHash() };

function alertInHash() {
  const m = /^#alert=(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
}

// States: unsupported | denied | off | busy | on | error (the button offers to try again).
function setNotifyState(state, note) {
  const b = $("notify-toggle");
  Object.assign(b, { hidden: false, disabled: ["unsupported", "denied", "busy"].includes(state) });
  b.dataset.state = state;
  b.textContent = state === "on" ? "关闭通知 Disable notifications" : "启用通知 Enable notifications";
  $("notify-note").textContent = note || "";
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" })
    .catch((e) => setNotifyState("unsupported", `service worker: ${e.message}`));
  navigator.serviceWorker.addEventListener("message", (e) => {
    if (e.data && e.data.type === "open-alert") openPushedAlert(e.data.id);
  });
}

async function openPushedAlert(id) {
  if (S.stopped) { PUSH.pendingAlert = id; return; }  // opened once the officer has logged in
  PUSH.pendingAlert = null;
  history.replaceState(null, "", `#alert=${id}`);
  try {
    await select(id);
  } catch (e) {
    $("detail").hidden = false;
    $("detail-error").textContent = e.message;
  }
}

async function startNotifications() {
  if (PUSH.pendingAlert !== null) openPushedAlert(PUSH.pendingAlert);
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    setNotifyState("unsupported", "this browser cannot receive push notifications");
    return;
  }
  try {
    const reg = await navigator.serviceWorker.ready;
    if (Notification.permission === "denied") {
      setNotifyState("denied", "notifications are blocked for this site");
      return;
    }
    setNotifyState((await reg.pushManager.getSubscription()) ? "on" : "off");
  } catch (e) {
    setNotifyState("error", e.message);
  }
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (b64url.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(subscription, key) {
  const had = subscription.options && subscription.options.applicationServerKey;
  const a = had ? new Uint8Array(had) : new Uint8Array(0);
  return a.length === key.length && a.every((x, i) => x === key[i]);
}

async function enableNotifications() {
  const reg = await navigator.serviceWorker.ready;
  if ((await Notification.requestPermission()) !== "granted") {
    setNotifyState("denied", "notifications are blocked for this site");
    return;
  }
  const key = keyBytes((await api("/api/push/vapid-public-key")).public_key);
  let subscription = await reg.pushManager.getSubscription();
  if (subscription && !sameKey(subscription, key)) {  // made for another server key: useless now
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription = subscription
    || await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  await api("/api/push/subscriptions", { method: "POST", body: JSON.stringify(subscription.toJSON()) });
  setNotifyState("on");
}

async function disableNotifications() {
  const reg = await navigator.serviceWorker.ready;
  const subscription = await reg.pushManager.getSubscription();
  if (subscription) {
    // Even if the server cannot be told now, unsubscribing here makes the push service answer 410
    // to the next push, and the server then drops the subscription itself.
    await api("/api/push/subscriptions", { method: "DELETE",
      body: JSON.stringify({ endpoint: subscription.endpoint }) }).catch(() => {});
    await subscription.unsubscribe();
  }
  setNotifyState("off");
}

$("notify-toggle").onclick = async () => {
  const enabling = $("notify-toggle").dataset.state !== "on";
  setNotifyState("busy");
  try {
    await (enabling ? enableNotifications() : disableNotifications());
  } catch (e) {
    setNotifyState("error", `${enabling ? "enable" : "disable"} failed: ${e.message}`);
  }
};
