# Extra result formats of code-interpreter sandboxes, run in each IPython kernel at start-up:
#   e2b/data          a pandas DataFrame as {column: [values]} (timestamps in ISO 8601)
#   e2b/chart         a matplotlib Figure's data, extracted by the e2b_charts package
#   application/json  lists and dicts that are JSON already
# Each check looks in sys.modules first, so a result that is not a DataFrame or Figure never
# imports pandas or matplotlib.


def _e2b_register_formatters():
    import json
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter, JSONFormatter
    from traitlets import ObjectName, Unicode

    class DataFrameColumns(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict, str)

        def __call__(self, obj):
            pandas = sys.modules.get("pandas")
            if pandas is None or not isinstance(obj, pandas.DataFrame):
                return super().__call__(obj)
            return {
                str(name): [v.isoformat() if isinstance(v, pandas.Timestamp) else v for v in values]
                for name, values in obj.to_dict(orient="list").items()
            }

    class FigureChart(BaseFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")
        _return_type = (dict, str)

        def __call__(self, obj):
            if "matplotlib" not in sys.modules:
                return super().__call__(obj)
            from matplotlib.figure import Figure

            if not isinstance(obj, Figure):
                return super().__call__(obj)
            try:
                from e2b_charts import chart_figure_to_dict

                return chart_figure_to_dict(obj)
            except Exception:  # a chart that cannot be extracted is still shown as an image
                return {}

    class PlainJSON(JSONFormatter):
        def __call__(self, obj):
            if isinstance(obj, (list, dict)):
                try:
                    return json.loads(json.dumps(obj)), {"expanded": True}
                except (TypeError, ValueError):
                    pass
            return super().__call__(obj)

    formatter = get_ipython().display_formatter
    formatter.formatters["e2b/data"] = DataFrameColumns(parent=formatter)
    formatter.formatters["e2b/chart"] = FigureChart(parent=formatter)
    formatter.formatters["application/json"] = PlainJSON(parent=formatter)


_e2b_register_formatters()
del _e2b_register_formatters
