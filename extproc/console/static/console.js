// The Overview's charts: uPlot over the console's series endpoint. The table below them holds the same figures,
// so the page reads whole without this script.
(function () {
  "use strict";
  var PALETTE = ["#0a58ca", "#a40e26", "#116329", "#8250df", "#bc4c00", "#1b7c83", "#57606a", "#cf222e"];
  var DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]]; // lines told apart without colour too
  // Counts are whole: their axis steps are too (never "0.5 errors").
  var WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8, 1e9];

  // A cost in dollars to two significant digits: a fraction of a cent still reads as itself, not as "0".
  function dollars(v) { return v === 0 ? "0" : String(Number(v.toPrecision(2))); }

  function axis(metric) {
    if (metric === "cost") {
      return {size: 80, values: function (u, splits) { return splits.map(dollars); }};
    }
    return {size: 60, incrs: WHOLE};
  }

  function draw(holder, doc, metric) {
    holder.textContent = "";
    if (!doc.values.length) {
      var empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No requests in this period.";
      holder.appendChild(empty);
      return;
    }
    var series = [{}];
    var data = [doc.x];
    doc.values.forEach(function (value, i) {
      series.push({label: value, stroke: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length], width: 2});
      data.push(doc.metrics[metric][i]);
    });
    var width = Math.max(280, holder.clientWidth || 560);
    // The legend names the lines only (the table holds the figures, and a phone has no pointer to hover with).
    new uPlot({width: width, height: 220, series: series, scales: {x: {time: true}}, legend: {live: false},
               axes: [{}, axis(metric)]}, data, holder);
  }

  function load(section) {
    fetch(section.getAttribute("data-series"), {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (doc) {
        section.querySelectorAll(".chart").forEach(function (holder) {
          draw(holder, doc, holder.getAttribute("data-metric"));
        });
        section.setAttribute("data-ready", "true");
      })
      .catch(function () { section.setAttribute("data-ready", "failed"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("section.charts[data-series]");
    if (section && window.uPlot) { load(section); }
  });
})();
