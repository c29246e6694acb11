// The console's only script: live regions refreshed from server-rendered fragments, and
// Ctrl+Enter to send a reply. No framework; the pages work without it (just not live).
(function () {
  "use strict";

  function scrollToEnd(el) {
    if (el.classList.contains("messages")) el.scrollTop = el.scrollHeight;
  }

  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (resp.status === 401 || resp.redirected) { window.location.reload(); return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (html) {
        if (html === null || html === el.innerHTML) return;
        var atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        el.innerHTML = html;
        if (atEnd) scrollToEnd(el);
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      scrollToEnd(el);
      var every = parseInt(el.getAttribute("data-every") || "5000", 10);
      setInterval(function () { if (!document.hidden) refresh(el); }, every);
    });
    document.querySelectorAll("form.reply textarea").forEach(function (area) {
      area.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          area.form.requestSubmit();
        }
      });
    });
  });
})();
