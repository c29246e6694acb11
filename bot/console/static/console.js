// The console's only script: live regions refreshed from server-rendered fragments,
// Ctrl+Enter to send a reply, confirmations, and knowledge uploads with per-file progress.
// No framework; the pages work without it (just not live).
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
        // Compare with what the server sent last: the live DOM differs once a reader
        // opens a <details>, and replacing it then would close what they are reading.
        if (html === null || html === el.lastHtml) return;
        el.lastHtml = html;
        var open = Array.prototype.map.call(el.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        var atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        el.innerHTML = html;
        // A fragment may carry the page's title (the inbox counts overdue waits in it).
        var titled = el.querySelector("[data-title]");
        if (titled) document.title = titled.getAttribute("data-title");
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        if (atEnd) scrollToEnd(el);
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  // --- uploads: one request (and one ingestion job) per file, so each has its progress ---

  function uploadFiles(form, files) {
    var list = form.parentNode.querySelector("ul.uploads");
    var words = JSON.parse(list.getAttribute("data-words"));
    var target = document.getElementById(form.getAttribute("data-refresh-target"));
    Array.prototype.forEach.call(files, function (file) {
      var item = document.createElement("li");
      var name = document.createElement("span");
      var bar = document.createElement("progress");
      var status = document.createElement("span");
      name.className = "name";
      name.textContent = file.name;
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-label", file.name);
      status.className = "status";
      status.textContent = words.uploading;
      item.append(name, bar, status);
      list.appendChild(item);
      sendOne(form, file, bar, status, words, target, item);
    });
  }

  function sendOne(form, file, bar, status, words, target, item) {
    var body = new FormData();
    body.append("files", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("data-upload"));
    xhr.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf"));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) bar.value = Math.round(50 * event.loaded / event.total);
    });
    xhr.addEventListener("load", function () {
      var reply = null;
      try { reply = JSON.parse(xhr.responseText); } catch (e) { reply = null; }
      if (xhr.status !== 202 || !reply || !reply.job_id) {
        fail(item, status, words.error + ((reply && reply.error) ? ": " + reply.error : " (" + xhr.status + ")"));
        return;
      }
      bar.value = 50;
      status.textContent = words.queued;
      follow(form.getAttribute("data-jobs") + reply.job_id, bar, status, words, target, item);
    });
    xhr.addEventListener("error", function () { fail(item, status, words.error); });
    xhr.send(body);
  }

  function follow(url, bar, status, words, target, item) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (job) {
        if (job === null) { setTimeout(function () { follow(url, bar, status, words, target, item); }, 2000); return; }
        if (job.status === "done" || job.status === "failed") {
          var result = (job.results || [])[0] || {};
          bar.value = 100;
          if (job.status === "failed" || result.outcome === "failed") {
            fail(item, status, words.failed + ": " + (result.error || job.error || ""));
          } else {
            item.classList.add("ok");
            status.textContent = (words[result.outcome] || words.done) + " · " +
              words.chunks.replace("{n}", String(result.chunks || 0));
          }
          if (target) refresh(target);
          return;
        }
        if (job.status === "running") {
          var share = job.to_embed ? job.embedded / job.to_embed : 0;
          bar.value = 50 + Math.round(45 * share);
          status.textContent = job.to_embed ? words.embedding + " " + job.embedded + "/" + job.to_embed : words.running;
        }
        setTimeout(function () { follow(url, bar, status, words, target, item); }, 700);
      })
      .catch(function () { setTimeout(function () { follow(url, bar, status, words, target, item); }, 2000); });
  }

  function fail(item, status, text) {
    item.classList.add("bad");
    status.textContent = text;
  }

  function setUpUpload(form) {
    var input = form.querySelector("input[type=file]");
    var drop = form.querySelector(".drop");
    // Files upload as soon as they are chosen or dropped: the button is for pages without script.
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.hidden = true; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (input.files.length) uploadFiles(form, input.files);
      input.value = "";
    });
    input.addEventListener("change", function () {
      if (input.files.length) uploadFiles(form, input.files);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(form, event.dataTransfer.files);
    });
  }

  // --- the dashboard: charts from the figures embedded in the page (vendored ECharts) ---

  function drawCharts() {
    var data = document.getElementById("dashboard-data");
    if (!data || !window.echarts) return;
    var figures = JSON.parse(data.textContent);
    var font = window.getComputedStyle(document.body).fontFamily;
    var perDay = document.getElementById("chart-per-day");
    var outcomes = document.getElementById("chart-outcomes");
    var charts = [];
    if (perDay) {
      var chart = window.echarts.init(perDay);
      chart.setOption({
        textStyle: { fontFamily: font },
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 40, right: 16, top: 36, bottom: 28 },
        xAxis: { type: "category", data: figures.days.map(function (d) { return d.slice(5); }) },
        yAxis: { type: "value", minInterval: 1 },
        series: Object.keys(figures.per_day).map(function (channel) {
          return { name: channel, type: "bar", stack: "all", data: figures.per_day[channel] };
        })
      });
      charts.push(chart);
    }
    if (outcomes) {
      var pie = window.echarts.init(outcomes);
      pie.setOption({
        textStyle: { fontFamily: font },
        tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
        series: [{ type: "pie", radius: ["35%", "65%"], data: figures.outcomes }]
      });
      charts.push(pie);
    }
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }

  // An agent's presence lapses unless a request of theirs keeps it (bot/handoff/presence.py):
  // this heartbeat keeps it while any console page is open, even in a background tab
  // (browsers slow its timer to once a minute there, still inside the server's 90 s).
  // Its answer also says how many customers wait unclaimed past the alert: the badge on
  // the inbox link shows it on every page (asked once at load, then with each beat).
  function heartbeat(form) {
    var url = form.getAttribute("data-beat");
    var badge = document.getElementById("late-badge");
    function beat() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!badge || !body) return;
          var late = body.late || 0;
          badge.textContent = late ? String(late) : "";
          badge.setAttribute("aria-label", late ? badge.getAttribute("data-label").replace("{n}", late) : "");
          badge.hidden = !late;
        })
        .catch(function () { /* the next beat tries again */ });
    }
    beat();
    setInterval(beat, 30000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts();
    document.querySelectorAll("form.presence[data-beat]").forEach(heartbeat);
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      scrollToEnd(el);
      var every = parseInt(el.getAttribute("data-every") || "5000", 10);
      // 0: refreshed on demand only (e.g. when an upload finishes).
      if (every > 0) setInterval(function () { if (!document.hidden) refresh(el); }, every);
      // Live: the server says when something changed; the slow poll above is the fallback.
      var events = el.getAttribute("data-events");
      if (events && window.EventSource) {
        var source = new EventSource(events);
        source.addEventListener("changed", function () { refresh(el); });
      }
    });
    document.querySelectorAll("form.upload").forEach(setUpUpload);
    document.querySelectorAll("select.canned").forEach(function (select) {
      select.addEventListener("change", function () {
        var area = document.getElementById(select.getAttribute("data-target"));
        if (!select.value || !area) return;
        area.value = area.value ? area.value + "\n" + select.value : select.value;
        select.value = "";
        area.focus();
      });
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.classList && form.classList.contains("confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
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
