// Interactive charts with plotly.js (served by the dashboard from the installed plotly package).
(function () {
  "use strict";
  var layoutBase = {margin: {l: 60, r: 20, t: 20, b: 50}, legend: {orientation: "h", y: -0.2},
                    font: {family: "system-ui, DejaVu Sans, sans-serif", size: 13}};
  var config = {displaylogo: false, responsive: true};

  function deliveryTraces(c) {
    var iv = c.intervals, traces = [];
    if (c.delivered) {  // bars first, so the steps are drawn over them
      var t = c.delivered.times, step = t.length > 1 ? Date.parse(t[1]) - Date.parse(t[0]) : 900000;
      traces.push({type: "bar", marker: {color: c.delivered.live ? "#66bb6a" : "#2e7d32"},
                   name: c.delivered.live ? "delivered kW so far (live, metered against baseline)"
                                          : "delivered kW (settled: metered against baseline)",
                   opacity: 0.65, offset: 0, width: t.map(function () { return step * 0.92; }),
                   x: t, y: c.delivered.delivered});
    }
    if (iv.edges.length) {
      var last = function (a) { return a.concat([a[a.length - 1]]); };
      traces.push({type: "scatter", mode: "lines", line: {shape: "hv", color: "#1f6fb2", width: 4},
                   name: "cleared kW (committed)", x: iv.edges, y: last(iv.cleared),
                   text: last(iv.price.map(function (p) { return "price " + p.toFixed(4); })), hoverinfo: "x+y+text"});
      traces.push({type: "scatter", mode: "lines", line: {shape: "hv", dash: "dash", color: "#111", width: 2},
                   name: "requested kW", x: iv.edges, y: last(iv.requested)});
    }
    return traces;
  }

  function drawDelivery(el, c) {
    var traces = deliveryTraces(c);
    if (!traces.length) { el.textContent = "Nothing cleared yet."; el.style.minHeight = "0"; return; }
    if (!el.classList.contains("js-plotly-plot")) { el.textContent = ""; el.style.minHeight = ""; }
    Plotly.react(el, traces, Object.assign({}, layoutBase, {yaxis: {title: {text: "kW"}, rangemode: "tozero"},
                                                             xaxis: {title: {text: "local time (" + c.tz + ")"}}, bargap: 0.08}), config);
  }

  var delivery = document.getElementById("delivery-chart");
  if (delivery) {
    drawDelivery(delivery, JSON.parse(document.getElementById("chart-data").textContent));
    var live = delivery.getAttribute("data-live");
    var shownRevision = document.getElementById("window-revision").textContent;
    var poll = function () {
      fetch(live, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
        if (!d) { return; }
        var state = document.getElementById("window-state");
        state.textContent = d.phase;
        state.className = "pill " + d.phase;
        state.setAttribute("title", "stored state: " + d.state);
        document.getElementById("headline").textContent = d.headline;
        drawDelivery(delivery, d.chart);
        // the page's tables follow a new clearing revision or the settlement: reloaded once when either comes
        if (String(d.revision) !== shownRevision || (d.settled && !document.getElementById("open-settlement"))) {
          window.location.reload(); return;
        }
      }).catch(function () {}).finally(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 5000);
  }

  var load = document.getElementById("load-chart");
  if (load) {  // a device's metered load against its baseline in a settled window (steps per M&V interval)
    var l = JSON.parse(document.getElementById("load-data").textContent);
    var width = l.times.length > 1 ? Date.parse(l.times[1]) - Date.parse(l.times[0]) : 900000;
    var tail = function (a) { return a.concat([a[a.length - 1]]); };
    Plotly.react(load, [
      {type: "bar", name: "metered load kW", x: l.times, y: l.actual, offset: 0,
       width: l.times.map(function () { return width * 0.9; }), marker: {color: "#1f6fb2"}, opacity: 0.7},
      {type: "scatter", mode: "lines", name: "baseline kW (what it would have drawn)", x: l.edges, y: tail(l.adjusted),
       line: {shape: "hv", color: "#111", width: 3}},
      {type: "scatter", mode: "lines", name: "asked to draw at most (baseline − setpoint)", x: l.edges, y: tail(l.target),
       line: {shape: "hv", color: "#b3261e", dash: "dot", width: 2}}
    ], Object.assign({}, layoutBase, {yaxis: {title: {text: "kW"}}, bargap: 0.1,
                                      xaxis: {title: {text: "local time (" + l.tz + ")"}}}), config);
  }

  var supply = document.getElementById("supply-chart");
  if (supply) {
    var s = JSON.parse(document.getElementById("supply-data").textContent);
    var traces = [{type: "scatter", mode: "lines", name: "fleet supply curve", x: s.quantities, y: s.prices,
                   line: {color: "#1f6fb2", width: 3}}];
    var pts = s.points.filter(function (p) { return p.price !== null && p.price !== undefined; });
    traces.push({type: "scatter", mode: "markers", name: "clearing point", marker: {size: 12, color: "#b3261e"},
                 x: pts.map(function (p) { return p.quantity; }), y: pts.map(function (p) { return p.price; }),
                 text: pts.map(function (p) { return p.start + ": " + p.quantity.toFixed(1) + " kW at " + p.price.toFixed(4); })});
    var req = s.points.map(function (p) { return p.requested; });
    var maxReq = Math.max.apply(null, req);
    traces.push({type: "scatter", mode: "lines", name: "requested", x: [maxReq, maxReq], y: [0, s.cap],
                 line: {dash: "dash", color: "#222"}});
    Plotly.react(supply, traces, Object.assign({}, layoutBase, {
      xaxis: {title: {text: "reduction offered (kW)"}, rangemode: "tozero"},
      yaxis: {title: {text: "price (" + s.currency + "/kWh)"}, rangemode: "tozero"},
      shapes: [{type: "line", xref: "paper", x0: 0, x1: 1, y0: s.cap, y1: s.cap, line: {color: "#a15c00", dash: "dot"}}]
    }), config);
  }
})();
