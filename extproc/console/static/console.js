// The Overview's charts: uPlot over the console's series endpoint. The table below them holds the same figures,
// so the page reads whole without this script.
(function () {
  "use strict";
  var PALETTE = ["#0a58ca", "#a40e26", "#116329", "#8250df", "#bc4c00", "#1b7c83", "#57606a", "#cf222e"];
  var DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]]; // lines told apart without colour too

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
      series.push({label: value, stroke: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length], width: 2,
                   value: function (u, v) { return v == null ? "-" : metric === "cost" ? v.toFixed(4) : String(v); }});
      data.push(doc.metrics[metric][i]);
    });
    var width = Math.max(280, holder.clientWidth || 560);
    new uPlot({width: width, height: 220, series: series, scales: {x: {time: true}},
               axes: [{}, {size: 60}]}, data, holder);
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
