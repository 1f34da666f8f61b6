// Loaded between require.js and @jupyter-widgets/html-manager's embed-amd.js on pages with widget
// snapshots (see nb_ipywidgets_js in _config.yml). Two fixes so the widgets render offline, error-free:
(function () {
  "use strict";
  // 1. embed-amd.js loads its icon fonts next to its AMD module's URL. Without this, RequireJS puts
  //    that module in the page's folder and the fonts 404; map it to the site's offline/widgets/.
  var widgets = new URL("../offline/widgets", document.currentScript.src).href;
  window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": widgets } });

  // 2. html-manager 1.0.6 typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the
  //    site uses MathJax 3, which replaces window.MathJax when it loads. Give every MathJax object a
  //    Hub.Queue that forwards to MathJax 3's typesetPromise.
  function addHub(mj) {
    if (mj && typeof mj === "object" && !("Hub" in mj)) {
      Object.defineProperty(mj, "Hub", {
        enumerable: false,
        configurable: true,
        value: {
          Queue: function (job) {
            var el = job && job[2];
            var current = window.MathJax;
            if (el && current && typeof current.typesetPromise === "function") {
              current.typesetPromise([el]).catch(function (err) { console.warn("MathJax:", err); });
            }
          },
        },
      });
    }
    return mj;
  }
  var current = addHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = addHub(value); },
  });
})();
