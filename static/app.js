// unitscope pages: draw Plotly figures from their embedded JSON, open units on click, sort tables,
// draw a unit's maps over its images.
(function () {
  "use strict";

  function drawFigure(div) {
    var fig = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    return Plotly.newPlot(div, fig.data, fig.layout, { responsive: true, displaylogo: false }).then(function () {
      // A point whose customdata ends with a URL opens that page (the scatter's units).
      div.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var data = point && point.customdata;
        var url = Array.isArray(data) ? data[data.length - 1] : null;
        if (typeof url === "string" && url.charAt(0) === "/") window.location.href = url;
      });
    });
  }

  // A long table's later rows wait in <template class="later-rows"> (not laid out while the page first draws):
  // they join the table once the charts are drawn, or before it is sorted, whichever comes first.
  function laterRows(root) {
    (root || document).querySelectorAll("template.later-rows").forEach(function (template) {
      template.parentNode.insertBefore(template.content, template);
      template.remove();
    });
  }

  // One figure per frame, those in the first screen first: the first chart shows as soon as it is drawn rather
  // than after every chart of the page (a figure costs ~0.1 s of a slow CPU). bench/first_page.py times it.
  function drawFigures() {
    if (typeof Plotly === "undefined") return laterRows();
    var divs = Array.prototype.slice.call(document.querySelectorAll("[data-figure]")).filter(function (div) {
      return document.getElementById(div.dataset.figure);
    });
    var below = divs.map(function (div) { return div.getBoundingClientRect().top >= window.innerHeight; });
    var order = divs.map(function (_, i) { return i; }).sort(function (a, b) { return below[a] - below[b] || a - b; });
    (function next(i) {
      if (i === order.length) return laterRows();
      drawFigure(divs[order[i]]).then(function () {
        requestAnimationFrame(function () { setTimeout(function () { next(i + 1); }, 0); });
      });
    })(0);
  }

  function cellValue(row, index, numeric) {
    var cell = row.children[index];
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }

  function makeSortable(table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th, _, all) {
      th.addEventListener("click", function () {
        laterRows(table);
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

  // A unit's map over its image: red where it fires, blue where it is inhibited, opacity |v| / scale, the
  // scale of the canvas's row (data-map-scale on its section: ±max|map| over that row's maps).
  var MAP_ALPHA = 0.85;
  function drawMaps() {
    if (!document.getElementById("show-maps")) return;
    document.querySelectorAll("canvas.unit-map").forEach(function (canvas) {
      var row = canvas.closest("[data-map-scale]");
      if (!row) return;
      var scale = parseFloat(row.dataset.mapScale);
      var values = JSON.parse(canvas.dataset.map);
      var ctx = canvas.getContext("2d");
      var image = ctx.createImageData(canvas.width, canvas.height);
      values.forEach(function (v, i) {
        var t = Math.max(-1, Math.min(1, v / scale));
        var rgb = t >= 0 ? [214, 39, 40] : [31, 95, 220];
        image.data.set([rgb[0], rgb[1], rgb[2], Math.round(255 * MAP_ALPHA * Math.abs(t))], 4 * i);
      });
      ctx.putImageData(image, 0, 0);
    });
    var toggle = document.getElementById("show-maps");
    toggle.addEventListener("change", function () {
      document.body.classList.toggle("hide-maps", !toggle.checked);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawFigures();
    drawMaps();
    document.querySelectorAll("table.sortable").forEach(makeSortable);
  });
})();
