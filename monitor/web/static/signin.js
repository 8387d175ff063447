// bipn-monitor: the end of the sign-in at the hospital's provider (monitor/web/signin.py). The
// page it runs in carries the provider's access token in a meta tag (never in the URL): it goes
// to the tab's sessionStorage, where common.js reads the bearer, and this page is replaced by
// the one the user came from (so it is not in the history either).
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`);
  const token = meta("bipn-token");
  const expires = meta("bipn-token-expires");
  const next = meta("bipn-next").content;
  sessionStorage.setItem("bipn-monitor-token", token.content);
  if (expires.content) sessionStorage.setItem("bipn-monitor-token-expires", expires.content);
  else sessionStorage.removeItem("bipn-monitor-token-expires");
  token.remove();
  // a page of this site only (the server checked it too)
  location.replace(/^\/(?![/\\])/.test(next) ? next : "/");
})();
