// Interactive charts with plotly.js (served by the dashboard from the installed plotly package).
(function () {
  "use strict";
  var layoutBase = {margin: {l: 60, r: 20, t: 20, b: 50}, legend: {orientation: "h", y: -0.2},
                    font: {family: "system-ui, DejaVu Sans, sans-serif", size: 13}};
  var config = {displaylogo: false, responsive: true};

  function deliveryTraces(c) {
    var iv = c.intervals, traces = [];
    if (iv.starts.length) {
      var mids = iv.starts.map(function (s, i) { return new Date((s + iv.ends[i]) / 2); });
      traces.push({type: "scatter", mode: "lines+markers", line: {shape: "hvh", dash: "dash", color: "#222"},
                   name: "requested kW", x: mids, y: iv.requested});
      traces.push({type: "scatter", mode: "lines+markers", line: {shape: "hvh", color: "#1f6fb2"},
                   name: "cleared kW", x: mids, y: iv.cleared,
                   text: iv.price.map(function (p) { return "price " + p.toFixed(4); })});
    }
    if (c.delivered) {
      traces.push({type: "bar", name: "delivered kW", marker: {color: "#2e7d32"}, opacity: 0.7,
                   x: c.delivered.times.map(function (t) { return new Date(t); }), y: c.delivered.delivered});
    }
    return traces;
  }

  function drawDelivery(el, c) {
    var traces = deliveryTraces(c);
    if (!traces.length) { el.textContent = "Nothing cleared yet."; el.style.minHeight = "0"; return; }
    Plotly.react(el, traces, Object.assign({}, layoutBase, {yaxis: {title: {text: "kW"}, rangemode: "tozero"},
                                                             xaxis: {title: {text: "time (your browser's zone)"}}}), config);
  }

  var delivery = document.getElementById("delivery-chart");
  if (delivery) {
    drawDelivery(delivery, JSON.parse(document.getElementById("chart-data").textContent));
    var live = delivery.getAttribute("data-live");
    var poll = function () {
      fetch(live, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
        if (!d) { return; }
        var state = document.getElementById("window-state");
        state.textContent = d.running && (d.state === "published" || d.state === "republished") ? "running" : d.state;
        state.className = "pill " + d.state;
        document.getElementById("window-revision").textContent = d.revision;
        if (d.chart.delivered) { document.getElementById("headline").textContent = d.chart.delivered.headline; }
        drawDelivery(delivery, d.chart);
      }).catch(function () {}).finally(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 5000);
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
