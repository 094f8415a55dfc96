//! The Python values a session can hold, as Rust values.

/// A Python value as the three frameworks store it in a session.
///
/// JSON's types map one to one: `None`, `bool`, `int`, `float`, `str`,
/// `list` and `dict` (a [`PyDict`], which keeps Python's insertion order).
/// The rest are the types Flask's tagged JSON adds, which plain JSON has no
/// spelling for:
///
/// | Python | Rust | Flask writes |
/// |---|---|---|
/// | `tuple` | [`PyValue::Tuple`] | `{" t": [...]}` |
/// | `bytes` | [`PyValue::Bytes`] | `{" b": "<standard base64>"}` |
/// | `markupsafe.Markup` | [`PyValue::Markup`] | `{" m": "<html>"}` |
/// | `uuid.UUID` | [`PyValue::Uuid`] (the 16 bytes) | `{" u": "<32 hex digits>"}` |
/// | `datetime.datetime` | [`PyValue::DateTime`] (Unix seconds, UTC) | `{" d": "<HTTP date>"}` |
///
/// Starlette and Django store plain JSON: for them a `Tuple` is written as a
/// list and a `Markup` as a string (as Python's `json` module does), and
/// `Bytes`, `Uuid` and `DateTime` cannot be stored (encoding fails with
/// [`InteropEncodeError::Unsupported`](super::InteropEncodeError::Unsupported)).
///
/// Limits of the mapping: integers are `i128` (a Python integer beyond that
/// makes the payload unreadable to keepsake), strings are Rust strings (a
/// JSON string holding a lone UTF-16 surrogate, which Python allows, is
/// refused), and datetimes have whole seconds in years 100 to 9999 (what
/// Flask's HTTP-date tag keeps: Python reads a year below 100 there as 19xx
/// or 20xx).
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{PyDict, PyValue};
///
/// let mut session = PyDict::new();
/// session.insert("user_id", 42);
/// session.insert("pair", PyValue::Tuple(vec![1.into(), "two".into()]));
/// assert_eq!(session.get("user_id"), Some(&PyValue::Int(42)));
/// assert_eq!(session.get("pair").and_then(PyValue::as_list).map(<[_]>::len), Some(2));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None` (JSON `null`).
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int`.
    Int(i128),
    /// A `float` (`NaN` and the infinities included, as Python writes them).
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `tuple` (Flask keeps it; the others store a list).
    Tuple(Vec<PyValue>),
    /// A `dict` with string keys, in insertion order.
    Dict(PyDict),
    /// `bytes` (Flask only).
    Bytes(Vec<u8>),
    /// `markupsafe.Markup`, HTML that is safe as it is (Flask keeps it; the
    /// others store a string).
    Markup(String),
    /// A `uuid.UUID`, as its 16 bytes (Flask only).
    Uuid([u8; 16]),
    /// A timezone-aware `datetime.datetime`, as Unix seconds (Flask only;
    /// Flask keeps whole seconds in UTC).
    DateTime(i64),
}

impl PyValue {
    /// The Python type name, for error messages.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyValue;
    ///
    /// assert_eq!(PyValue::Bytes(vec![1]).type_name(), "bytes");
    /// assert_eq!(PyValue::None.type_name(), "NoneType");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::None => "NoneType",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
            Self::List(_) => "list",
            Self::Tuple(_) => "tuple",
            Self::Dict(_) => "dict",
            Self::Bytes(_) => "bytes",
            Self::Markup(_) => "Markup",
            Self::Uuid(_) => "UUID",
            Self::DateTime(_) => "datetime",
        }
    }

    /// The string, for a `Str` or a `Markup`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyValue;
    ///
    /// assert_eq!(PyValue::from("ada").as_str(), Some("ada"));
    /// assert_eq!(PyValue::Int(1).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(text) | Self::Markup(text) => Some(text),
            _ => None,
        }
    }

    /// The integer, for an `Int` that fits in an `i64`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyValue;
    ///
    /// assert_eq!(PyValue::Int(7).as_i64(), Some(7));
    /// assert_eq!(PyValue::Int(1 << 70).as_i64(), None);
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The items, for a `List` or a `Tuple`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyValue;
    ///
    /// let tuple = PyValue::Tuple(vec![PyValue::None]);
    /// assert_eq!(tuple.as_list(), Some(&[PyValue::None][..]));
    /// ```
    pub fn as_list(&self) -> Option<&[PyValue]> {
        match self {
            Self::List(items) | Self::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The dict, for a `Dict`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{PyDict, PyValue};
    ///
    /// assert!(PyValue::Dict(PyDict::new()).as_dict().is_some_and(PyDict::is_empty));
    /// ```
    pub fn as_dict(&self) -> Option<&PyDict> {
        match self {
            Self::Dict(dict) => Some(dict),
            _ => None,
        }
    }

    /// Whether only plain JSON types occur in the value (no tuple, bytes,
    /// Markup, UUID or datetime), so Starlette and Django can store it.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyValue;
    ///
    /// assert!(PyValue::List(vec![1.into(), "a".into()]).is_plain_json());
    /// assert!(!PyValue::Bytes(vec![]).is_plain_json());
    /// ```
    pub fn is_plain_json(&self) -> bool {
        // Without recursion: an app can build a value nested deeper than
        // the stack would hold.
        let mut stack = vec![self];
        while let Some(value) = stack.pop() {
            match value {
                Self::Tuple(_)
                | Self::Bytes(_)
                | Self::Markup(_)
                | Self::Uuid(_)
                | Self::DateTime(_) => return false,
                _ => stack.extend(value.children()),
            }
        }
        true
    }

    /// Whether some value inside this one sits more than `max` levels of
    /// lists, tuples and dicts down (this value is at level 0). Found
    /// without recursion, so that a value nested deeper than the stack
    /// would hold is refused rather than overflowing it.
    pub(crate) fn nests_deeper_than(&self, max: usize) -> bool {
        let mut stack = vec![(self, 0)];
        while let Some((value, depth)) = stack.pop() {
            if depth > max {
                return true;
            }
            stack.extend(value.children().map(|child| (child, depth + 1)));
        }
        false
    }

    /// The values directly inside a list, tuple or dict; none for the rest.
    fn children(&self) -> impl Iterator<Item = &PyValue> {
        let (items, dict): (&[PyValue], Option<&PyDict>) = match self {
            Self::List(items) | Self::Tuple(items) => (items, None),
            Self::Dict(dict) => (&[], Some(dict)),
            _ => (&[], None),
        };
        items
            .iter()
            .chain(dict.into_iter().flat_map(PyDict::values))
    }
}

impl From<bool> for PyValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i64> for PyValue {
    fn from(value: i64) -> Self {
        Self::Int(value.into())
    }
}

impl From<i32> for PyValue {
    fn from(value: i32) -> Self {
        Self::Int(value.into())
    }
}

impl From<u64> for PyValue {
    fn from(value: u64) -> Self {
        Self::Int(value.into())
    }
}

impl From<f64> for PyValue {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<&str> for PyValue {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for PyValue {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl From<Vec<PyValue>> for PyValue {
    fn from(value: Vec<PyValue>) -> Self {
        Self::List(value)
    }
}

impl From<PyDict> for PyValue {
    fn from(value: PyDict) -> Self {
        Self::Dict(value)
    }
}

impl<T: Into<PyValue>> From<Option<T>> for PyValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::None, Into::into)
    }
}

/// A Python `dict` with string keys: insertion-ordered, and setting a key
/// that exists keeps its place (as in Python).
///
/// Starlette and Django write a session's keys in this order; Flask sorts
/// them. Equality ignores the order, as Python's does.
///
/// # Example
///
/// ```
/// use keepsake::codec::interop::{PyDict, PyValue};
///
/// let mut dict: PyDict = [("b", 1), ("a", 2)].into_iter().collect();
/// dict.insert("b", 3);
/// assert_eq!(dict.keys().collect::<Vec<_>>(), ["b", "a"]);
/// assert_eq!(dict.get("b"), Some(&PyValue::Int(3)));
/// assert_eq!(dict.remove("a"), Some(PyValue::Int(2)));
/// assert_eq!(dict.len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PyDict {
    items: Vec<(String, PyValue)>,
}

impl PyDict {
    /// An empty dict.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(keepsake::codec::interop::PyDict::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, returning the old value. A new key goes last;
    /// an existing one keeps its place.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{PyDict, PyValue};
    ///
    /// let mut dict = PyDict::new();
    /// assert_eq!(dict.insert("k", 1), None);
    /// assert_eq!(dict.insert("k", 2), Some(PyValue::Int(1)));
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<PyValue>) -> Option<PyValue> {
        let key = key.into();
        let value = value.into();
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.items.push((key, value));
                None
            }
        }
    }

    /// The value of `key`.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{PyDict, PyValue};
    ///
    /// let dict: PyDict = [("k", true)].into_iter().collect();
    /// assert_eq!(dict.get("k"), Some(&PyValue::Bool(true)));
    /// assert_eq!(dict.get("x"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its value; the others keep their order.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyDict;
    ///
    /// let mut dict: PyDict = [("k", 1)].into_iter().collect();
    /// assert!(dict.remove("k").is_some() && dict.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<PyValue> {
        let index = self.items.iter().position(|(k, _)| k == key)?;
        Some(self.items.remove(index).1)
    }

    /// The number of keys.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyDict;
    ///
    /// assert_eq!([("a", 1), ("b", 2)].into_iter().collect::<PyDict>().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no keys.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(keepsake::codec::interop::PyDict::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The keys, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyDict;
    ///
    /// let dict: PyDict = [("z", 1), ("a", 1)].into_iter().collect();
    /// assert_eq!(dict.keys().collect::<Vec<_>>(), ["z", "a"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _)| k.as_str())
    }

    /// The values, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::{PyDict, PyValue};
    ///
    /// let dict: PyDict = [("a", 1)].into_iter().collect();
    /// assert_eq!(dict.values().collect::<Vec<_>>(), [&PyValue::Int(1)]);
    /// ```
    pub fn values(&self) -> impl Iterator<Item = &PyValue> {
        self.items.iter().map(|(_, v)| v)
    }

    /// The items, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use keepsake::codec::interop::PyDict;
    ///
    /// let dict: PyDict = [("a", 1)].into_iter().collect();
    /// assert_eq!(dict.iter().count(), 1);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PyValue)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The first item, if any.
    pub(crate) fn first(&self) -> Option<(&str, &PyValue)> {
        self.items.first().map(|(k, v)| (k.as_str(), v))
    }

    /// The items, by value.
    pub(crate) fn into_items(self) -> Vec<(String, PyValue)> {
        self.items
    }
}

impl PartialEq for PyDict {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, value)| other.get(key) == Some(value))
    }
}

impl<K: Into<String>, V: Into<PyValue>> FromIterator<(K, V)> for PyDict {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut dict = Self::new();
        for (key, value) in iter {
            dict.insert(key, value);
        }
        dict
    }
}

impl IntoIterator for PyDict {
    type Item = (String, PyValue);
    type IntoIter = std::vec::IntoIter<(String, PyValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}
