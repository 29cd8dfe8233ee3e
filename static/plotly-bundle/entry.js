// The traces unitscope's figures use (app/figures.py and the pages' modules); scatter comes with the core.
var Plotly = require('plotly.js/lib/core');
Plotly.register([require('plotly.js/lib/bar'), require('plotly.js/lib/box'), require('plotly.js/lib/histogram')]);
module.exports = Plotly;
