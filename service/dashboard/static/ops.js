// Reach ops: confirm dangerous actions; on the overview, apply `ops.overview` from the /ops socket.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var W = 640, H = 220, LEFT = 44, RIGHT = 8, TOP = 12, BOTTOM = 40;

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  function pick(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value === null || value === undefined ? undefined : value[key];
    }, data);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    var total = Math.round(seconds);
    var d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
    var m = Math.floor((total % 3600) / 60), s = total % 60;
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + s + " s";
    return s + " s";
  }

  function utc(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
  }

  var FORMATS = {
    count: function (v) { return v === null || v === undefined ? "—" : String(v); },
    duration: duration,
    percent: function (v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + " %"; },
    time: utc,
    text: function (v) { return v === null || v === undefined ? "—" : String(v); }
  };

  function niceMax(value) {
    if (value <= 2) return 2;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 4, 10];
    for (var i = 0; i < steps.length; i++) if (value <= steps[i] * power) return steps[i] * power;
    return 10 * power;
  }

  function number(v) { return Number.isInteger(v) ? String(v) : v.toFixed(1); }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The same drawing as service/dashboard/charts.py, rebuilt in place.
  function drawBars(svg, bars) {
    if (!svg) return;
    var title = svg.querySelector("title");
    while (svg.lastChild) svg.removeChild(svg.lastChild);
    if (title) svg.appendChild(title);
    var top = niceMax(Math.max.apply(null, [0].concat(bars.map(function (b) { return b[1]; }))));
    var plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    var slot = plotW / Math.max(1, bars.length);
    var every = Math.max(1, Math.ceil(bars.length / 12));
    [0, top / 2, top].forEach(function (tick) {
      var y = TOP + plotH - plotH * tick / top;
      svg.appendChild(el("line", { "class": "grid", x1: LEFT, x2: W - RIGHT, y1: y.toFixed(1), y2: y.toFixed(1) }));
      svg.appendChild(el("text", { "class": "axis", x: LEFT - 6, y: (y + 4).toFixed(1), "text-anchor": "end" }, number(tick)));
    });
    bars.forEach(function (bar, index) {
      var height = plotH * bar[1] / top;
      var x = LEFT + slot * index + slot * 0.15, y = TOP + plotH - height;
      var rect = el("rect", {
        "class": "bar", x: x.toFixed(1), y: y.toFixed(1), width: (slot * 0.7).toFixed(1),
        height: height.toFixed(1), "data-label": bar[0], "data-value": number(bar[1])
      });
      rect.appendChild(el("title", {}, bar[0] + ": " + number(bar[1])));
      svg.appendChild(rect);
      var middle = (x + slot * 0.35).toFixed(1);
      if (bars.length <= 12 && bar[1]) {
        svg.appendChild(el("text", { "class": "value", x: middle, y: (y - 3).toFixed(1), "text-anchor": "middle" }, number(bar[1])));
      }
      if (index % every === 0) {
        svg.appendChild(el("text", { "class": "axis", x: middle, y: H - BOTTOM + 16, "text-anchor": "middle" }, bar[0]));
      }
    });
    if (!bars.some(function (bar) { return bar[1]; })) {
      svg.appendChild(el("text", {
        "class": "empty", x: (LEFT + plotW / 2).toFixed(1), y: (TOP + plotH / 2).toFixed(1), "text-anchor": "middle"
      }, "no data in this window"));
    }
  }

  function apply(figures) {
    document.querySelectorAll("[data-figure]").forEach(function (node) {
      var format = FORMATS[node.getAttribute("data-format")] || FORMATS.count;
      var value = pick(figures, node.getAttribute("data-figure"));
      node.textContent = format(value);
      if (node.hasAttribute("datetime")) node.setAttribute("datetime", value || "");
    });
    drawBars(document.getElementById("chart-bids"), figures.bids.per_hour.map(function (b) {
      return [b.start.slice(11, 16), b.count];
    }));
    drawBars(document.getElementById("chart-response"), figures.response_time.histogram.map(function (b) {
      return [b.label, b.count];
    }));
    drawBars(document.getElementById("chart-push"), figures.push.outcomes.map(function (b) {
      return [b.outcome, b.count];
    }));
    var updates = Number(document.body.getAttribute("data-updates") || "0") + 1;
    document.body.setAttribute("data-updates", String(updates));
  }

  function status(text, online) {
    var node = document.getElementById("live-status");
    if (!node || node.textContent === text) return;
    node.textContent = text;
    node.className = "status " + (online ? "online" : "offline");
  }

  var live = document.querySelector("[data-refresh-seconds]");
  if (document.body.getAttribute("data-page") === "overview" && window.io && live) {
    // Figures arrive every OPS_REFRESH_SECONDS; none for three of those while the socket looks
    // open means the stream stopped on the way (Engine.IO itself notices only after 45 s).
    var staleAfter = (3 * (Number(live.getAttribute("data-refresh-seconds")) || 2) + 2) * 1000;
    var updated = document.getElementById("updated-at");
    var state = "connecting", lastArrival = Date.now(), retry = null;

    var show = function (next, text) {
      state = next;
      status(text, next === "live");
    };
    var shownSince = function () {
      return "figures of " + (updated ? updated.textContent : "—");
    };
    var why = function (problem) {
      return problem.status === 503 ? "database unavailable" : "figures failed (" + problem.title + ")";
    };

    // The page says "not live" as served (no script runs, or the client failed to load).
    show("connecting", "connecting…");
    var socket = window.io("/ops", { transports: ["websocket"] });
    socket.on("connect", function () {
      lastArrival = Date.now();
      show("live", "live");
    });
    socket.on("disconnect", function (reason) {
      // The server closes a socket only once its session has ended; the client won't retry.
      if (reason === "io server disconnect") show("ended", "signed out: reload to sign in again");
      else show("offline", "offline, reconnecting… (" + shownSince() + ")");
    });
    socket.on("connect_error", function (err) {
      var problem = err && err.data;
      if (!problem || typeof problem.status !== "number") {
        // No answer from the service (restarting, unreachable): the client retries by itself.
        show("offline", "offline, reconnecting… (" + shownSince() + ")");
      } else if (problem.status === 401) {
        show("ended", "signed out: reload to sign in again");
      } else {
        // Refused for another reason (503: the database is away): the client won't retry that.
        show("offline", why(problem) + ", retrying… (" + shownSince() + ")");
        clearTimeout(retry);
        var wait = Math.min(30, Math.max(2, Number(problem.retry_after) || 5));
        retry = setTimeout(function () { socket.connect(); }, wait * 1000);
      }
    });
    socket.on("ops.overview", function (figures) {
      lastArrival = Date.now();
      apply(figures);
      show("live", "live");
    });
    socket.on("ops.overview.failed", function (problem) {
      lastArrival = Date.now();
      show("failing", why(problem || {}) + ": " + shownSince());
    });
    setInterval(function () {
      if ((state === "live" || state === "failing") && Date.now() - lastArrival > staleAfter) {
        show("stale", "stale: nothing new since " + (updated ? updated.textContent : "—"));
      }
    }, 1000);
  }
})();
