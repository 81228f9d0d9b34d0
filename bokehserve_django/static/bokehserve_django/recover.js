/*
 * bokehserve_django page recovery: reloads a Bokeh page whose server session is gone.
 *
 * BokehJS reconnects a lost WebSocket with the page's original token and, after the
 * reconnect, replaces its document in place with whatever the server answers. That can
 * never bring back a session that no longer exists, so the server closes such a reconnect
 * with code 4010 (SESSION_GONE); only a reload gets a fresh page, session and token.
 * Code 4009 (CLUSTER_UNAVAILABLE) means the server could not tell where the session lives;
 * BokehJS retries that itself, and this script reloads only when its retries are nearly
 * used up. See docs/page-recovery.md.
 *
 * It also shows what an administrator sends from the Django admin (docs/operations.md, "Live
 * sessions"): a session closed with code 4012 (CLOSED_BY_ADMIN) shows the administrator's
 * reason and is not reloaded by itself; a notice (a "bokehserve_notice" document message)
 * appears in a banner at the top of the page that its user can dismiss.
 *
 * This file must run before BokehJS opens its WebSocket: bokehserve_django's resources put
 * it ahead of BokehJS in pages and in autoload.js. It has no dependencies and declares no
 * globals besides one Symbol-keyed marker on window.
 */
(function (root) {
  "use strict";

  var MARKER = typeof Symbol === "function" ? Symbol.for("bokehserve_django.recover") : "__bokehserve_django_recover";
  // Two embeds on one page each load this file: wrapping WebSocket twice would watch
  // every socket twice and schedule two reloads.
  if (root[MARKER]) {
    return;
  }
  var Native = root.WebSocket;
  if (typeof Native !== "function" || typeof Proxy !== "function" || typeof Reflect !== "object") {
    return;
  }

  var SESSION_GONE = 4010;
  var CLUSTER_UNAVAILABLE = 4009;
  var CLOSED_BY_ADMIN = 4012;
  // The document message type of an administrator's notice (cluster/inventory.py NOTICE_MESSAGE).
  var NOTICE_MESSAGE = "bokehserve_notice";
  var BANNER_ID = "bokehserve-admin-notice";
  // BokehJS retries at most 5 times (at once, then after 2, 4, 8, 16 s). Reloading on the
  // 4th consecutive 4009 leaves one retry in reserve, in case the cluster is back by then,
  // while the page is still reloaded before BokehJS gives up for good.
  var UNAVAILABLE_LIMIT = 4;
  // Long enough to read the notice, short enough that nobody reaches for F5 first.
  var NOTICE_DELAY_MS = 1500;
  // The reload-loop guard: never two automatic reloads within MIN_GAP_MS; each reload that
  // follows the previous one with no working connection in between doubles the gap.
  var MIN_GAP_MS = 10000;
  var MAX_GAP_MS = 5 * 60 * 1000;
  // An automatic reload older than this no longer counts towards the doubling.
  var STREAK_WINDOW_MS = 10 * 60 * 1000;
  var STORAGE_KEY = "bokehserve_django.recover";
  var NOTICE_ID = "bokehserve-recover-notice";

  var state = {
    // Consecutive 4009 closes, per connection (URL and offered subprotocols, which carry the
    // token): BokehJS retries each embed's connection separately.
    unavailable: Object.create(null),
    // Connections an administrator closed: BokehJS's reconnects then meet 4010, which must
    // not reload the page (that would open the session the administrator just closed).
    closedByAdmin: Object.create(null),
    reloadTimer: null,
    // BokehJS documents whose notices are shown already.
    watched: typeof WeakSet === "function" ? new WeakSet() : null,
  };
  root[MARKER] = state;

  function isBokehSocket(protocols) {
    // BokehJS offers ["bokeh", token]; anything else is someone else's socket.
    if (typeof protocols === "string") {
      protocols = [protocols];
    }
    return Array.isArray(protocols) && protocols.length > 0 &&
      typeof protocols[0] === "string" && protocols[0].indexOf("bokeh") === 0;
  }

  // sessionStorage survives the reload (it is per tab), which is what the loop guard needs.
  // It can be missing or throw (storage disabled, opaque origins); then no automatic reload
  // is attempted at all, because nothing would stop a loop.
  function storage() {
    try {
      var s = root.sessionStorage;
      var probe = STORAGE_KEY + ".probe";
      s.setItem(probe, "1");
      s.removeItem(probe);
      return s;
    } catch (e) {
      return null;
    }
  }

  function readRecord(s) {
    try {
      var record = JSON.parse(s.getItem(STORAGE_KEY) || "null");
      if (record && typeof record.at === "number" && typeof record.streak === "number") {
        return record;
      }
    } catch (e) {
      // A foreign or corrupt value: treat it as no record.
    }
    return null;
  }

  function writeRecord(s, record) {
    try {
      s.setItem(STORAGE_KEY, JSON.stringify(record));
    } catch (e) {
      // Quota or privacy mode: the guard then behaves as if there had been no reload.
    }
  }

  function gapFor(streak) {
    return Math.min(MIN_GAP_MS * Math.pow(2, streak), MAX_GAP_MS);
  }

  function showNotice(text) {
    var doc = root.document;
    if (!doc) {
      return;
    }
    var notice = doc.getElementById(NOTICE_ID);
    if (notice === null) {
      notice = doc.createElement("div");
      notice.id = NOTICE_ID;
      notice.setAttribute("role", "status");
      notice.setAttribute("aria-live", "polite");
      // Inline styles: the host page's CSS is unknown, and a stylesheet would be one more
      // request at the moment the server is in trouble.
      notice.style.cssText = [
        "position:fixed", "left:50%", "bottom:16px", "transform:translateX(-50%)",
        "z-index:2147483647", "max-width:90vw", "padding:8px 14px", "border-radius:4px",
        "background:rgba(40,40,40,0.92)", "color:#fff", "font:14px/1.4 sans-serif",
        "box-shadow:0 2px 8px rgba(0,0,0,0.3)", "pointer-events:none",
      ].join(";");
      (doc.body || doc.documentElement).appendChild(notice);
    }
    notice.textContent = text;
  }

  function scheduleReload(text) {
    if (state.reloadTimer !== null) {
      // BokehJS retries while the reload is pending; one reload is enough.
      return;
    }
    var s = storage();
    if (s === null) {
      showNotice(text.replace(/reloading\u2026$/, "reload the page to continue."));
      return;
    }
    var now = Date.now();
    var last = readRecord(s);
    var delay = NOTICE_DELAY_MS;
    var streak = 0;
    if (last !== null) {
      var earliest = last.at + gapFor(last.ok ? 0 : last.streak);
      delay = Math.max(delay, earliest - now);
      if (!last.ok && now - last.at < STREAK_WINDOW_MS) {
        streak = last.streak + 1;
      }
    }
    if (delay > NOTICE_DELAY_MS) {
      text = text.replace(/reloading\u2026$/, "reloading in " + Math.ceil(delay / 1000) + " s\u2026");
    }
    showNotice(text);
    state.reloadTimer = root.setTimeout(function () {
      writeRecord(s, {at: Date.now(), streak: streak, ok: false});
      root.location.reload();
    }, delay);
  }

  // A message means the server accepted the session (its first message is the ACK): the
  // last automatic reload, if any, worked. A bare "open" proves nothing, because the server
  // accepts a WebSocket before it closes it with 4009 or 4010.
  function markWorking(key) {
    state.unavailable[key] = 0;
    var s = storage();
    if (s !== null) {
      var last = readRecord(s);
      if (last !== null && !last.ok) {
        last.ok = true;
        writeRecord(s, last);
      }
    }
  }

  function showBanner(text) {
    var doc = root.document;
    if (!doc || typeof text !== "string" || text === "") {
      return;
    }
    var banner = doc.getElementById(BANNER_ID);
    if (banner === null) {
      banner = doc.createElement("div");
      banner.id = BANNER_ID;
      banner.setAttribute("role", "alert");
      banner.style.cssText = [
        "position:fixed", "left:0", "right:0", "top:0", "z-index:2147483647", "display:flex",
        "align-items:center", "gap:12px", "padding:8px 14px", "background:#fff3cd", "color:#222",
        "border-bottom:1px solid #e0c36c", "font:14px/1.4 sans-serif", "box-shadow:0 2px 6px rgba(0,0,0,0.2)",
      ].join(";");
      var message = doc.createElement("span");
      message.className = "bokehserve-admin-notice-text";
      message.style.flex = "1";
      var dismiss = doc.createElement("button");
      dismiss.type = "button";
      dismiss.className = "bokehserve-admin-notice-dismiss";
      dismiss.setAttribute("aria-label", "Dismiss this notice");
      dismiss.textContent = "\u00d7";
      dismiss.style.cssText = "border:0;background:none;font-size:18px;line-height:1;cursor:pointer;color:inherit";
      dismiss.addEventListener("click", function () {
        banner.style.display = "none";
      });
      banner.appendChild(message);
      banner.appendChild(dismiss);
      (doc.body || doc.documentElement).appendChild(banner);
    }
    // textContent, never innerHTML: the text is the administrator's, shown as typed.
    banner.firstChild.textContent = text;
    banner.style.display = "flex";
  }

  // BokehJS lists its documents in Bokeh.documents once they exist (after the first pull).
  // Looking on every message of a Bokeh socket finds a new document before the server's next
  // message reaches it: this listener runs before BokehJS's own (it was added first).
  function watchDocuments() {
    var bokeh = root.Bokeh;
    var documents = bokeh && bokeh.documents;
    if (!documents || typeof documents.length !== "number" || state.watched === null) {
      return;
    }
    for (var i = 0; i < documents.length; i++) {
      var doc = documents[i];
      if (doc && typeof doc.on_message === "function" && !state.watched.has(doc)) {
        state.watched.add(doc);
        doc.on_message(NOTICE_MESSAGE, function (data) {
          showBanner(data && data.text);
        });
      }
    }
  }

  function onClose(key, event) {
    if (event.code === CLOSED_BY_ADMIN) {
      state.closedByAdmin[key] = true;
      var reason = event.reason || "An administrator closed this session";
      showNotice(reason.replace(/[.\s]*$/, "") + ". Reload the page to start a new session.");
    } else if (state.closedByAdmin[key]) {
      // BokehJS's reconnects after the close: the notice above stays, nothing reloads.
    } else if (event.code === SESSION_GONE) {
      scheduleReload("This session has ended; reloading\u2026");
    } else if (event.code === CLUSTER_UNAVAILABLE) {
      var count = (state.unavailable[key] || 0) + 1;
      state.unavailable[key] = count;
      if (count >= UNAVAILABLE_LIMIT) {
        scheduleReload("The server is unavailable; reloading\u2026");
      }
    }
    // Other codes neither count nor reset: they use up BokehJS's retries just the same.
  }

  function watch(socket, url, protocols) {
    var key = String(url) + "\n" + [].concat(protocols).join(",");
    var working = false;
    socket.addEventListener("message", function () {
      if (!working) {
        working = true;
        markWorking(key);
      }
      watchDocuments();
    });
    socket.addEventListener("close", function (event) {
      onClose(key, event);
    });
  }

  // A Proxy rather than a subclass: `WebSocket.OPEN`, `WebSocket.name`, `instanceof
  // WebSocket` and subclassing (`class X extends WebSocket`) all behave as with the native
  // constructor, and sockets that are not Bokeh's are constructed exactly as before.
  root.WebSocket = new Proxy(Native, {
    construct: function (target, args, newTarget) {
      var socket = Reflect.construct(target, args, newTarget);
      if (isBokehSocket(args[1])) {
        watch(socket, args[0], args[1]);
      }
      return socket;
    },
  });
})(window);
