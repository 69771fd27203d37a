/* streamapp dashboard: polls the worker's JSON API and draws counters, tables and
   two SVG charts. No dependencies; every value from the API is inserted as text
   (textContent / SVG attributes), never as HTML. */
(function () {
  "use strict";

  var FAST_MS = 2000;         // counters and lag
  var SLOW_EVERY = 2;         // earthquakes, dead letters, activity, alerts: every 2nd tick
  var QUAKE_LIMIT = 500;      // events behind the histogram and the map
  var RECENT_ROWS = 12;
  var DEAD_ROWS = 12;
  var HOT_ROWS = 10;          // hottest region-days
  var ALERT_ROWS = 10;
  var SVGNS = "http://www.w3.org/2000/svg";
  var COUNTERS = ["fetched", "valid", "invalid", "upserted", "dead_lettered"];

  var previous = {};
  var seenQuakes = null;
  var seenLetters = null;
  var seenAlerts = null;
  var lastQuakes = [];
  var hotCells = [];
  var tick = 0;

  function $(id) { return document.getElementById(id); }

  function fetchJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) {
            throw new Error((body && body.error) || ("HTTP " + resp.status));
          }
          return body;
        });
      });
  }

  function fmtInt(n) {
    return (n === null || n === undefined) ? "\u2013" : Number(n).toLocaleString("en-US");
  }

  function fmtTime(iso) {
    if (!iso) { return "\u2013"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.toISOString().replace("T", " ").slice(0, 19);
  }

  function ago(iso) {
    if (!iso) { return ""; }
    var s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 60) { return s + " s ago"; }
    if (s < 3600) { return Math.round(s / 60) + " min ago"; }
    return Math.round(s / 3600) + " h ago";
  }

  function setText(id, value) {
    var el = $(id);
    if (el) { el.textContent = value; }
  }

  function setDelta(name, value) {
    var el = $("d-" + name);
    if (!el) { return; }
    var before = previous[name];
    previous[name] = value;
    if (before === undefined) { el.textContent = ""; el.className = "delta"; return; }
    var diff = value - before;
    el.textContent = diff > 0 ? ("+" + fmtInt(diff) + " in " + FAST_MS / 1000 + " s") : "";
    el.className = diff > 0 ? "delta up" : "delta";
  }

  function cell(tr, value, cls, title) {
    var td = document.createElement("td");
    td.textContent = value;
    if (cls) { td.className = cls; }
    if (title) { td.title = title; }
    tr.appendChild(td);
    return td;
  }

  function replaceRows(tbody, rows) {
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    rows.forEach(function (tr) { tbody.appendChild(tr); });
  }

  function status(ok, message) {
    $("status-dot").className = "dot " + (ok ? "ok" : "bad");
    setText("status-text", message);
  }

  // ------------------------------------------------------------------ counters
  function renderStats(s) {
    COUNTERS.forEach(function (name) {
      setText("c-" + name, fmtInt(s[name]));
      setDelta(name, Number(s[name] || 0));
    });
    if (s.last_fetch_at) {
      setText("c-last-fetch", (s.last_fetch_result || "?") + " \u00b7 " + fmtTime(s.last_fetch_at));
      setText("d-last-fetch", ago(s.last_fetch_at) + (s.fetch_errors ? " \u00b7 " + fmtInt(s.fetch_errors) + " failed polls" : ""));
    } else {
      setText("c-last-fetch", "no fetch yet");
      setText("d-last-fetch", "");
    }
    var kinds = $("kinds");
    while (kinds.firstChild) { kinds.removeChild(kinds.firstChild); }
    var byKind = s.invalid_by_kind || {};
    var names = Object.keys(byKind).sort();
    if (!names.length) {
      kinds.textContent = "none";
    }
    names.forEach(function (k) {
      var span = document.createElement("span");
      var badge = document.createElement("span");
      badge.className = "kind";
      badge.textContent = k;
      span.appendChild(badge);
      span.appendChild(document.createTextNode(" " + fmtInt(byKind[k])));
      kinds.appendChild(span);
    });
  }

  // ----------------------------------------------------------------------- lag
  function renderLag(report) {
    var tbody = $("lag-table").tBodies[0];
    var rows = [];
    var topics = report.topics || {};
    Object.keys(topics).sort().forEach(function (topic) {
      var t = topics[topic];
      var tr = document.createElement("tr");
      cell(tr, topic);
      cell(tr, fmtInt(t.lag), "num");
      cell(tr, t.partitions.map(function (p) { return p.partition + ":" + p.lag; }).join(" "), "parts",
        t.partitions.map(function (p) {
          return "partition " + p.partition + ": end " + p.end_offset + ", committed " +
            (p.committed_offset === null ? "none" : p.committed_offset) + ", lag " + p.lag;
        }).join("\n"));
      rows.push(tr);
    });
    replaceRows(tbody, rows);
    if (report.error) {
      setText("c-lag", "?");
      setText("lag-note", "lag unavailable: " + report.error);
    } else {
      setText("c-lag", fmtInt(report.total_lag));
      setDelta("lag", Number(report.total_lag || 0));
      setText("lag-note", "group " + report.group + ", checked " + fmtTime(new Date(report.checked_at * 1000).toISOString()) + " UTC");
    }
  }

  // ----------------------------------------------------------------- earthquakes
  function depthColour(depth) {
    if (depth < 35) { return "#e4572e"; }
    if (depth < 70) { return "#f3a712"; }
    if (depth < 300) { return "#29a19c"; }
    return "#3d5a80";
  }

  function renderQuakes(page) {
    var items = page.items || [];
    var tbody = $("quakes").tBodies[0];
    var known = seenQuakes || {};
    var next = {};
    var rows = items.slice(0, RECENT_ROWS).map(function (q) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-id", q.id);
      if (seenQuakes && !known[q.id + "@" + q.updated]) { tr.className = "new"; }
      cell(tr, fmtTime(q.time), "time");
      var mag = cell(tr, q.magnitude === null ? "\u2013" : Number(q.magnitude).toFixed(1), "num mag");
      mag.title = q.mag_type || "";
      cell(tr, q.place || q.title || q.id, "place", q.place || "");
      cell(tr, q.depth === null ? "\u2013" : Number(q.depth).toFixed(1), "num");
      return tr;
    });
    items.forEach(function (q) { next[q.id + "@" + q.updated] = true; });
    seenQuakes = next;
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, "no earthquakes stored yet");
      td.colSpan = 4;
      rows.push(tr);
    }
    replaceRows(tbody, rows);
    lastQuakes = items;
    renderHistogram(items);
    renderMap();
  }

  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVGNS, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }

  function renderHistogram(items) {
    var root = $("hist");
    clear(root);
    var mags = items.map(function (q) { return q.magnitude; })
      .filter(function (m) { return m !== null && m !== undefined; });
    setText("hist-sub", "(" + mags.length + " latest events" +
      (items.length - mags.length ? ", " + (items.length - mags.length) + " without magnitude" : "") + ")");
    var lo = -1, hi = 8, width = 0.5;
    var bins = [];
    for (var b = lo; b < hi; b += width) { bins.push(0); }
    mags.forEach(function (m) {
      var i = Math.floor((Math.min(Math.max(m, lo), hi - 1e-9) - lo) / width);
      bins[i] += 1;
    });
    var max = Math.max.apply(null, bins.concat([1]));
    var left = 24, bottom = 240, top = 22, plotW = 370, plotH = bottom - top;
    var bw = plotW / bins.length;
    svg("line", { x1: left, y1: bottom, x2: left + plotW, y2: bottom, "class": "axis" }, root);
    bins.forEach(function (count, i) {
      var h = count / max * plotH;
      var x = left + i * bw;
      var rect = svg("rect", { x: x + 1, y: bottom - h, width: bw - 2, height: h, "class": "bar" }, root);
      var title = svg("title", {}, rect);
      var from = lo + i * width;
      title.textContent = "M " + from.toFixed(1) + " to " + (from + width).toFixed(1) + ": " + count;
      if (count) {
        var t = svg("text", { x: x + bw / 2, y: bottom - h - 3, "text-anchor": "middle", "class": "count" }, root);
        t.textContent = String(count);
      }
      if (i % 2 === 0) {
        var label = svg("text", { x: x, y: bottom + 13, "text-anchor": "middle" }, root);
        label.textContent = String(from);
      }
    });
    var axis = svg("text", { x: left + plotW, y: 10, "text-anchor": "end" }, root);
    axis.textContent = "events per 0.5 magnitude";
  }

  function renderMap() {
    var items = lastQuakes;
    var root = $("map");
    clear(root);
    if (window.STREAMAPP_LAND) {
      svg("path", { d: window.STREAMAPP_LAND, "class": "land" }, root);
    }
    // The hottest cells under the events: opacity by their share of the top count.
    var top = Math.max.apply(null, hotCells.map(function (a) { return a.count; }).concat([1]));
    hotCells.forEach(function (a) {
      var b = a.bounds;  // [min_lat, min_lon, max_lat, max_lon]
      var r = svg("rect", {
        x: b[1] + 180, y: 90 - b[2], width: b[3] - b[1], height: b[2] - b[0],
        "class": "hot", "fill-opacity": (0.12 + 0.4 * a.count / top).toFixed(2),
        "data-region": a.region
      }, root);
      var title = svg("title", {}, r);
      title.textContent = a.region + ": " + a.count + " events on " + fmtTime(a.window_start).slice(0, 10);
      var label = svg("text", { x: b[1] + 180.5, y: 90 - b[2] + 3, "class": "hot-label" }, root);
      label.textContent = a.region;
    });
    for (var lon = 30; lon < 360; lon += 30) {
      svg("line", { x1: lon, y1: 0, x2: lon, y2: 180, "class": "grat" }, root);
    }
    for (var lat = 30; lat < 180; lat += 30) {
      svg("line", { x1: 0, y1: lat, x2: 360, y2: lat, "class": "grat" }, root);
    }
    var plotted = 0;
    // Smallest last, so they are not hidden under the big ones.
    items.slice().sort(function (a, b) { return (b.magnitude || 0) - (a.magnitude || 0); })
      .forEach(function (q) {
        if (typeof q.longitude !== "number" || typeof q.latitude !== "number") { return; }
        var m = q.magnitude === null ? 0 : q.magnitude;
        var c = svg("circle", {
          cx: (q.longitude + 180).toFixed(2),
          cy: (90 - q.latitude).toFixed(2),
          r: Math.max(0.7, 0.6 + Math.max(m, 0) * 0.55).toFixed(2),
          fill: depthColour(q.depth)
        }, root);
        var title = svg("title", {}, c);
        title.textContent = "M " + (q.magnitude === null ? "?" : q.magnitude) + " \u00b7 " +
          (q.place || q.id) + " \u00b7 " + q.depth + " km \u00b7 " + fmtTime(q.time) + " UTC";
        plotted += 1;
      });
    setText("map-sub", "(" + plotted + " latest events)");
  }

  // ---------------------------------------------------------------- dead letters
  function renderDeadLetters(page) {
    var tbody = $("dead-letters").tBodies[0];
    var known = seenLetters || {};
    var next = {};
    var rows = (page.items || []).slice(0, DEAD_ROWS).map(function (d) {
      var tr = document.createElement("tr");
      if (seenLetters && !known[d.id]) { tr.className = "new"; }
      next[d.id] = true;
      cell(tr, fmtTime(d.failed_at || d.stored_at), "time");
      var kindTd = document.createElement("td");
      var badge = document.createElement("span");
      badge.className = "kind";
      badge.textContent = d.error_kind;
      kindTd.appendChild(badge);
      tr.appendChild(kindTd);
      cell(tr, d.error_message || "", "reason", (d.error_message || "") + "\n\n" + (d.payload_preview || ""));
      cell(tr, "p" + d.source_partition + " @" + d.source_offset +
        (d.redriven_at ? " \u00b7 redriven" : ""), "time", d.source_topic);
      return tr;
    });
    seenLetters = next;
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, "no dead letters");
      td.colSpan = 4;
      rows.push(tr);
    }
    replaceRows(tbody, rows);
  }

  // -------------------------------------------------------------- activity
  function fmtEnergy(joules) {
    return (joules === null || joules === undefined || !joules) ? "0" : Number(joules).toExponential(2);
  }

  function fmtMag(m) {
    return (m === null || m === undefined) ? "\u2013" : Number(m).toFixed(1);
  }

  function emptyRow(message, span) {
    var tr = document.createElement("tr");
    var td = cell(tr, message, "empty");
    td.colSpan = span;
    return tr;
  }

  function renderActivity(page) {
    var items = (page.items || []).slice(0, HOT_ROWS);
    var rows = items.map(function (a) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-region", a.region);
      cell(tr, a.region, "region", "lat " + a.bounds[0] + " to " + a.bounds[2] + ", lon " + a.bounds[1] + " to " + a.bounds[3]);
      cell(tr, fmtTime(a.window_start).slice(0, 10), "time");
      cell(tr, fmtInt(a.count), "num");
      cell(tr, fmtMag(a.max_magnitude), "num mag");
      cell(tr, fmtEnergy(a.energy_joules), "num", "radiated energy, sum of 10^(1.5 M + 4.8) J");
      cell(tr, a.min_depth_km === null ? "\u2013" :
        Number(a.min_depth_km).toFixed(0) + "\u2013" + Number(a.max_depth_km).toFixed(0), "num");
      return tr;
    });
    if (!rows.length) {
      rows.push(emptyRow("no activity yet: each stored event is counted in its 10\u00d710\u00b0 " +
        "cell per hour and per day; the busiest cell-days of the last 30 days show here", 6));
    }
    replaceRows($("activity").tBodies[0], rows);
    hotCells = items;
    renderMap();
  }

  // ---------------------------------------------------------------- alerts
  function renderAlerts(page) {
    var known = seenAlerts || {};
    var next = {};
    var rows = (page.items || []).slice(0, ALERT_ROWS).map(function (a) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-id", a.id);
      if (seenAlerts && !known[a.id]) { tr.className = "new"; }
      next[a.id] = true;
      cell(tr, fmtTime(a.detected_at), "time", "occurred " + fmtTime(a.occurred_at) + " UTC");
      var ruleTd = document.createElement("td");
      var badge = document.createElement("span");
      badge.className = "rule";
      badge.textContent = a.rule;
      ruleTd.appendChild(badge);
      tr.appendChild(ruleTd);
      cell(tr, a.summary, "summary", a.summary + (a.url ? "\n" + a.url : ""));
      var d = a.delivery || {};
      var text = d.status || "?";
      if (d.status === "failing" || (d.status === "pending" && d.attempts)) {
        text += " (" + d.attempts + " attempts)";
      }
      var td = cell(tr, text, "delivery " + (d.status || ""),
        d.last_error ? "last error: " + d.last_error : (d.delivered_at ? "delivered " + fmtTime(d.delivered_at) + " UTC" : ""));
      td.setAttribute("data-status", d.status || "");
      return tr;
    });
    seenAlerts = next;
    if (!rows.length) {
      rows.push(emptyRow("no alerts yet: an event of magnitude \u2265 ALERT_MIN_MAGNITUDE, a tsunami " +
        "flag, an orange or red PAGER level, or a region's hourly surge raises one", 4));
    }
    replaceRows($("alerts").tBodies[0], rows);
  }

  // ---------------------------------------------------------------------- loop
  function refresh() {
    var slow = tick % SLOW_EVERY === 0;
    tick += 1;
    var jobs = [
      fetchJSON("/api/stats").then(renderStats),
      fetchJSON("/api/lag").then(renderLag)
    ];
    if (slow) {
      jobs.push(fetchJSON("/api/earthquakes?limit=" + QUAKE_LIMIT).then(renderQuakes));
      jobs.push(fetchJSON("/api/dead-letters?limit=" + DEAD_ROWS).then(renderDeadLetters));
      jobs.push(fetchJSON("/api/activity?window=1d&order=count&limit=" + HOT_ROWS).then(renderActivity));
      jobs.push(fetchJSON("/api/alerts?limit=" + ALERT_ROWS).then(renderAlerts));
    }
    return Promise.all(jobs.map(function (job) {
      return job.then(function () { return null; }, function (err) { return err; });
    })).then(function (errors) {
      var failed = errors.filter(function (e) { return e; });
      if (failed.length) {
        status(false, "error: " + failed[0].message);
      } else {
        status(true, "live");
      }
      setText("updated", "Updated " + fmtTime(new Date().toISOString()) + " UTC.");
    });
  }

  function loop() {
    refresh().then(function () { setTimeout(loop, FAST_MS); });
  }

  document.addEventListener("DOMContentLoaded", loop);
}());
