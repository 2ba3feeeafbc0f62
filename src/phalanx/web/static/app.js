// phalanx dashboard: live updates from /ui/watch (the API's watch stream, relayed with the
// signed-in token). The server renders every page; this script only patches it:
// - jobs: each Job event rewrites that job's row from the event's object (no list re-read);
// - services, pipeline runs, one run: each event carries one changed Service or run drawn
//   by the server (its section, its row, or the run's <main>), put in place of the old one;
// - one job, nodes, queues, overview: an event that concerns the page fetches the page's
//   <main> again (?partial=1), at most once per second.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const watchKinds = body.dataset.watch;
  if (!watchKinds || !body.dataset.rv) return;

  let lastId = body.dataset.rv;
  let source = null;
  let live = document.getElementById("live");

  function status(text) {
    if (live) live.textContent = "live updates: " + text;
  }

  function connect() {
    let url = "/ui/watch?kinds=" + encodeURIComponent(watchKinds) +
      "&resourceVersion=" + encodeURIComponent(lastId);
    if (page === "pipelinerun") url += "&name=" + encodeURIComponent(body.dataset.run);
    source = new EventSource(url);
    source.onopen = function () { status("on"); };
    source.onmessage = function (message) {
      if (message.lastEventId) lastId = message.lastEventId;
      const event = JSON.parse(message.data);
      if (event.type === "ERROR") {  // the log moved past us: read the page again
        source.close();
        window.location.reload();
        return;
      }
      onEvent(event);
    };
    source.onerror = function () {
      // Resume from the last revision seen (the URL's resourceVersion would replay).
      source.close();
      status("reconnecting…");
      fetch("/ui/watch?kinds=Job&timeoutSeconds=0.001", { credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) window.location.assign("/ui/login?next=" +
            encodeURIComponent(window.location.pathname + window.location.search));
          else setTimeout(connect, 1000);
        })
        .catch(function () { setTimeout(connect, 3000); });
    };
  }

  // ---- refresh <main> from the server ----
  let timer = null;
  let refreshing = false;
  function refresh() {
    if (timer !== null) return;
    timer = setTimeout(function () {
      timer = null;
      if (refreshing) { refresh(); return; }
      refreshing = true;
      const url = new URL(window.location.href);
      url.searchParams.set("partial", "1");
      fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) document.getElementById("main").innerHTML = html;
        })
        .catch(function () {})
        .finally(function () { refreshing = false; });
    }, 1000);
  }

  // ---- the jobs table ----
  function badge(phase) {
    const span = document.createElement("span");
    span.className = "badge phase-" + phase.toLowerCase();
    span.textContent = phase;
    return span;
  }

  function ago(at) {
    let s = Math.max(0, Date.now() / 1000 - at);
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) return Math.floor(s / size) + unit;
    }
    return Math.floor(s) + "s";
  }

  // The cells of pages.job_row, from a JobInfo.
  function jobCells(row, job) {
    row.dataset.job = job.name;
    row.dataset.phase = job.phase;
    row.dataset.queue = job.queue;
    row.replaceChildren();
    const cell = function (text, cls) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      if (text !== null) td.textContent = text;
      row.appendChild(td);
      return td;
    };
    const link = document.createElement("a");
    link.href = "/ui/jobs/" + encodeURIComponent(job.name);
    link.textContent = job.name;
    cell(null).appendChild(link);
    cell(job.queue);
    cell(null, "phase").appendChild(badge(job.phase));
    const reason = cell(job.reason_code, "reason");
    reason.title = job.reason ? job.reason.message : job.message;
    cell(job.running_pods + "/" + job.pod_count, "pods");
    cell(job.request["nvidia.com/gpu"] || "-");
    cell(String(job.priority));
    const age = cell(ago(job.created_at), "age");
    age.dataset.at = job.created_at;
  }

  function matches(job) {
    return (!body.dataset.queue || job.queue === body.dataset.queue) &&
      (!body.dataset.phase || job.phase === body.dataset.phase);
  }

  function onJobsEvent(event) {
    const table = document.getElementById("jobs");
    if (!table || event.kind !== "Job") return;
    const rows = table.tBodies[0];
    const row = rows.querySelector('tr[data-job="' + CSS.escape(event.name) + '"]');
    if (event.type === "DELETED") {
      if (row) row.remove();
      return;
    }
    const job = event.object;
    if (row) {
      if (matches(job)) jobCells(row, job); else row.remove();
    } else if (event.type === "ADDED" && body.dataset.last_page === "1" && !body.dataset.selector &&
               matches(job)) {
      const fresh = document.createElement("tr");
      jobCells(fresh, job);
      rows.appendChild(fresh);
      table.hidden = false;
      const empty = table.nextElementSibling;
      if (empty && empty.classList.contains("empty")) empty.remove();
    }
  }

  // ---- services and pipeline runs: the server sends the changed object drawn ----
  function drawn(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content.firstElementChild;
  }

  // Put ``html`` (or nothing, when deleted) in place of the element ``selector`` finds in
  // ``container``; a new one goes last, and the "nothing here" note goes.
  function replaceIn(container, selector, event, html) {
    if (!container) return;
    const old = container.querySelector(selector);
    if (event.type === "DELETED") {
      if (old) old.remove();
      return;
    }
    const fresh = drawn(html);
    if (!fresh) return;
    if (old) old.replaceWith(fresh);
    else container.appendChild(fresh);
  }

  function onWorkloadEvent(event) {
    const name = CSS.escape(event.name);
    if (page === "services" && event.kind === "Service") {
      const list = document.getElementById("services");
      replaceIn(list, 'section[data-service="' + name + '"]', event, event.html);
      const empty = list && list.querySelector("p.empty");
      if (empty && list.querySelector("section")) empty.remove();
    } else if (page === "pipelineruns" && event.kind === "PipelineRun") {
      const table = document.getElementById("runs");
      if (!table) return;
      replaceIn(table.tBodies[0], 'tr[data-run="' + name + '"]', event, event.html);
      table.hidden = table.tBodies[0].rows.length === 0;
      const empty = table.nextElementSibling;
      if (!table.hidden && empty && empty.classList.contains("empty")) empty.remove();
    } else if (page === "pipelinerun" && event.name === body.dataset.run) {
      if (event.type === "DELETED") status("the run was deleted");
      else {
        document.getElementById("main").innerHTML = event.html;
        live = document.getElementById("live");
        status("on");
      }
    }
  }

  function onEvent(event) {
    if (typeof event.html === "string" || (event.type === "DELETED" &&
        (event.kind === "Service" || event.kind === "PipelineRun"))) onWorkloadEvent(event);
    else if (page === "jobs") onJobsEvent(event);
    else if (page === "job") { if (event.name === body.dataset.job) refresh(); }
    else refresh();
  }

  connect();
  if (page === "overview") setInterval(refresh, 15000);
})();
