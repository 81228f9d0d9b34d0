/* bokehserve_test_ext: the Shout model, in the plugin format of `bokeh build`. */
(function(root, factory) {
  factory(root["Bokeh"], undefined);
})(this, function(Bokeh, version) {
  return (function(modules, entry, aliases) {
    if (Bokeh == null) {
      throw new Error("Cannot find Bokeh. You have to load it prior to loading plugins.");
    }
    return Bokeh.register_plugin(modules, entry, aliases);
  })({
    // Module ids share one namespace with BokehJS's own ("index" is BokehJS's): keep ours unique.
    "bokehserve_test_ext/index": function _(require, module, exports, __esModule, __esExport) {
      __esModule();
      const {Div, DivView} = require("@bokehjs/models/widgets/div");
      const {register_models} = require("@bokehjs/base");

      class ShoutView extends DivView {
        render() {
          super.render();
          // Marks the element, so tests can see that this view (not a fallback) rendered it.
          this.el.dataset.shout = String(this.model.text).toUpperCase();
        }
      }

      class Shout extends Div {
        static __name__ = "Shout";
        static __module__ = "bokehserve_test_ext.shout";
        static {
          this.prototype.default_view = ShoutView;
        }
      }

      exports.Shout = Shout;
      register_models({Shout});
    },
  }, "bokehserve_test_ext/index", {});
});
