//! Charts: the data the server extracts from a matplotlib figure (a result's `chart` field),
//! typed as the official SDKs type it — line, scatter, bar, pie, box-and-whisker, a
//! superchart of several, or unknown.
//!
//! ```
//! use e2b_code_interpreter::charts::{Chart, ChartType};
//!
//! let chart = Chart::from_json(&serde_json::json!({
//!     "type": "pie", "title": "Shares",
//!     "elements": [{"label": "a", "angle": 120.0, "radius": 1.0}]
//! })).unwrap();
//! assert_eq!(chart.chart_type(), ChartType::Pie);
//! let Chart::Pie(pie) = chart else { unreachable!() };
//! assert_eq!(pie.elements[0].angle, 120.0);
//! ```

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// What kind of chart a [`Chart`] is; its wire name is [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChartType {
    /// `line`
    Line,
    /// `scatter`
    Scatter,
    /// `bar`
    Bar,
    /// `pie`
    Pie,
    /// `box_and_whisker`
    BoxAndWhisker,
    /// `superchart`: several charts in one figure.
    SuperChart,
    /// `unknown`, or a type this SDK does not know.
    Unknown,
}

impl ChartType {
    /// The wire name: `line`, `scatter`, `bar`, `pie`, `box_and_whisker`, `superchart`,
    /// `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChartType::Line => "line",
            ChartType::Scatter => "scatter",
            ChartType::Bar => "bar",
            ChartType::Pie => "pie",
            ChartType::BoxAndWhisker => "box_and_whisker",
            ChartType::SuperChart => "superchart",
            ChartType::Unknown => "unknown",
        }
    }
}

/// The scale of an axis; one the SDK does not know (or none) is [`ScaleType::Unknown`], as
/// the Python SDK does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScaleType {
    /// `linear`
    Linear,
    /// `datetime`
    Datetime,
    /// `categorical`
    Categorical,
    /// `log`
    Log,
    /// `symlog`
    Symlog,
    /// `logit`
    Logit,
    /// `function`
    Function,
    /// `functionlog`
    FunctionLog,
    /// `asinh`
    Asinh,
    /// Missing or not one of the above.
    Unknown,
}

impl<'de> Deserialize<'de> for ScaleType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Option::<String>::deserialize(deserializer)?;
        Ok(match name.as_deref() {
            Some("linear") => ScaleType::Linear,
            Some("datetime") => ScaleType::Datetime,
            Some("categorical") => ScaleType::Categorical,
            Some("log") => ScaleType::Log,
            Some("symlog") => ScaleType::Symlog,
            Some("logit") => ScaleType::Logit,
            Some("function") => ScaleType::Function,
            Some("functionlog") => ScaleType::FunctionLog,
            Some("asinh") => ScaleType::Asinh,
            _ => ScaleType::Unknown,
        })
    }
}

/// A value on an axis: a number, or text (categories, dates as strings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ChartValue {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

/// One line or one set of scatter points.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PointData {
    /// The legend's label.
    pub label: String,
    /// The `(x, y)` points.
    pub points: Vec<(ChartValue, ChartValue)>,
}

/// A line or scatter chart ([`Chart::Line`], [`Chart::Scatter`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PointChart {
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The x axis's label.
    #[serde(default)]
    pub x_label: Option<String>,
    /// The y axis's label.
    #[serde(default)]
    pub y_label: Option<String>,
    /// The x axis's unit (from a label like `Time (s)`).
    #[serde(default)]
    pub x_unit: Option<String>,
    /// The y axis's unit.
    #[serde(default)]
    pub y_unit: Option<String>,
    /// The x axis's ticks.
    #[serde(default)]
    pub x_ticks: Vec<ChartValue>,
    /// The x axis's tick labels.
    #[serde(default)]
    pub x_tick_labels: Vec<String>,
    /// The x axis's scale.
    #[serde(default = "unknown_scale")]
    pub x_scale: ScaleType,
    /// The y axis's ticks.
    #[serde(default)]
    pub y_ticks: Vec<ChartValue>,
    /// The y axis's tick labels.
    #[serde(default)]
    pub y_tick_labels: Vec<String>,
    /// The y axis's scale.
    #[serde(default = "unknown_scale")]
    pub y_scale: ScaleType,
    /// The lines or point sets.
    pub elements: Vec<PointData>,
}

fn unknown_scale() -> ScaleType {
    ScaleType::Unknown
}

/// One bar.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BarData {
    /// The bar's label (its x category).
    pub label: String,
    /// The group (series) it belongs to.
    pub group: String,
    /// Its height.
    pub value: ChartValue,
}

/// A bar chart ([`Chart::Bar`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BarChart {
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The x axis's label.
    #[serde(default)]
    pub x_label: Option<String>,
    /// The y axis's label.
    #[serde(default)]
    pub y_label: Option<String>,
    /// The x axis's unit.
    #[serde(default)]
    pub x_unit: Option<String>,
    /// The y axis's unit.
    #[serde(default)]
    pub y_unit: Option<String>,
    /// The bars.
    pub elements: Vec<BarData>,
}

/// One slice of a pie.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PieData {
    /// The slice's label.
    pub label: String,
    /// Its angle, in degrees.
    pub angle: f64,
    /// Its radius.
    pub radius: f64,
}

/// A pie chart ([`Chart::Pie`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PieChart {
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The slices.
    pub elements: Vec<PieData>,
}

/// One box of a box-and-whisker chart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BoxAndWhiskerData {
    /// The box's label.
    pub label: String,
    /// The lower whisker.
    pub min: f64,
    /// The box's bottom.
    pub first_quartile: f64,
    /// The line inside the box.
    pub median: f64,
    /// The box's top.
    pub third_quartile: f64,
    /// The upper whisker.
    pub max: f64,
    /// Points beyond the whiskers (none when absent).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub outliers: Vec<f64>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    Ok(Option::<Vec<f64>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A box-and-whisker chart ([`Chart::BoxAndWhisker`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BoxAndWhiskerChart {
    /// The title.
    #[serde(default)]
    pub title: Option<String>,
    /// The x axis's label.
    #[serde(default)]
    pub x_label: Option<String>,
    /// The y axis's label.
    #[serde(default)]
    pub y_label: Option<String>,
    /// The x axis's unit.
    #[serde(default)]
    pub x_unit: Option<String>,
    /// The y axis's unit.
    #[serde(default)]
    pub y_unit: Option<String>,
    /// The boxes.
    pub elements: Vec<BoxAndWhiskerData>,
}

/// Several charts in one figure (subplots): [`Chart::SuperChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct SuperChart {
    /// The figure's title.
    pub title: Option<String>,
    /// The charts, each typed.
    pub elements: Vec<Chart>,
}

/// A chart the server could not classify (`unknown`), or of a type this SDK does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownChart {
    /// The wire type, as sent.
    pub type_name: String,
    /// The title.
    pub title: Option<String>,
    /// The elements, untyped.
    pub elements: Vec<Value>,
}

/// A chart extracted from a figure, typed by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// `line`
    Line(PointChart),
    /// `scatter`
    Scatter(PointChart),
    /// `bar`
    Bar(BarChart),
    /// `pie`
    Pie(PieChart),
    /// `box_and_whisker`
    BoxAndWhisker(BoxAndWhiskerChart),
    /// `superchart`
    SuperChart(SuperChart),
    /// `unknown` or another type.
    Unknown(UnknownChart),
}

impl Chart {
    /// Types a chart from its JSON, as the official SDKs do: by `type`, with a type they do
    /// not know kept as [`Chart::Unknown`].
    ///
    /// # Errors
    ///
    /// A message naming the field that is missing or mistyped, when the JSON is not an object
    /// with a string `type` or a known type's fields do not fit.
    pub fn from_json(value: &Value) -> Result<Chart, String> {
        let Some(object) = value.as_object() else {
            return Err(format!("a chart is a JSON object, got {value}"));
        };
        let type_name = match object.get("type") {
            Some(Value::String(name)) => name.clone(),
            None | Some(Value::Null) => "unknown".to_owned(),
            Some(other) => return Err(format!("a chart's type is a string, got {other}")),
        };
        fn typed<T: for<'de> Deserialize<'de>>(what: &str, value: &Value) -> Result<T, String> {
            T::deserialize(value).map_err(|e| format!("a {what} chart: {e}"))
        }
        let title = || {
            object
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let elements = || match object.get("elements") {
            Some(Value::Array(items)) => Ok(items.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(other) => Err(format!("a chart's elements are a list, got {other}")),
        };
        Ok(match type_name.as_str() {
            "line" => Chart::Line(typed("line", value)?),
            "scatter" => Chart::Scatter(typed("scatter", value)?),
            "bar" => Chart::Bar(typed("bar", value)?),
            "pie" => Chart::Pie(typed("pie", value)?),
            "box_and_whisker" => Chart::BoxAndWhisker(typed("box_and_whisker", value)?),
            "superchart" => Chart::SuperChart(SuperChart {
                title: title(),
                elements: elements()?
                    .iter()
                    .map(Chart::from_json)
                    .collect::<Result<_, _>>()?,
            }),
            _ => Chart::Unknown(UnknownChart {
                type_name,
                title: title(),
                elements: elements()?,
            }),
        })
    }

    /// Its type.
    pub fn chart_type(&self) -> ChartType {
        match self {
            Chart::Line(_) => ChartType::Line,
            Chart::Scatter(_) => ChartType::Scatter,
            Chart::Bar(_) => ChartType::Bar,
            Chart::Pie(_) => ChartType::Pie,
            Chart::BoxAndWhisker(_) => ChartType::BoxAndWhisker,
            Chart::SuperChart(_) => ChartType::SuperChart,
            Chart::Unknown(_) => ChartType::Unknown,
        }
    }

    /// Its title, if it has one.
    pub fn title(&self) -> Option<&str> {
        match self {
            Chart::Line(c) | Chart::Scatter(c) => c.title.as_deref(),
            Chart::Bar(c) => c.title.as_deref(),
            Chart::Pie(c) => c.title.as_deref(),
            Chart::BoxAndWhisker(c) => c.title.as_deref(),
            Chart::SuperChart(c) => c.title.as_deref(),
            Chart::Unknown(c) => c.title.as_deref(),
        }
    }
}
