// unitscope pages: draw Plotly figures from their embedded JSON, open units on click, sort tables.
(function () {
  "use strict";

  function drawFigures() {
    document.querySelectorAll("[data-figure]").forEach(function (div) {
      var source = document.getElementById(div.dataset.figure);
      if (!source || typeof Plotly === "undefined") return;
      var fig = JSON.parse(source.textContent);
      Plotly.newPlot(div, fig.data, fig.layout, { responsive: true, displaylogo: false }).then(function () {
        // A point whose customdata ends with a URL opens that page (the scatter's units).
        div.on("plotly_click", function (event) {
          var point = event.points && event.points[0];
          var data = point && point.customdata;
          var url = Array.isArray(data) ? data[data.length - 1] : null;
          if (typeof url === "string" && url.charAt(0) === "/") window.location.href = url;
        });
      });
    });
  }

  function cellValue(row, index, numeric) {
    var cell = row.children[index];
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }

  function makeSortable(table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th, _, all) {
      th.addEventListener("click", function () {
        var index = Array.prototype.indexOf.call(th.parentNode.children, th);
        var numeric = th.dataset.sort === "num";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        all.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawFigures();
    document.querySelectorAll("table.sortable").forEach(makeSortable);
  });
})();
