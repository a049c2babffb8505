//! Snapshot rows on their way from the primary's `COPY` to the replica's loader.
//!
//! A [`RowBlock`] holds a chunk of one table's rows decoded into one text buffer and one
//! array of cells, so a million-row resync costs a few allocations per chunk rather than
//! several per row (allocated on the async side, freed on the writer's thread: both sides
//! showed in resync profiles, on a machine whose two cores the copy and the load share).

use rusqlite::types::{ToSqlOutput, Value, ValueRef};

/// One column value; text lives in the block's buffer.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Null,
    Integer(i64),
    Text { start: u32, end: u32 },
}

/// Rows of `width` columns, in the order they were pushed.
#[derive(Debug)]
pub struct RowBlock {
    width: usize,
    cells: Vec<Cell>,
    text: String,
}

impl RowBlock {
    /// An empty block of rows with `width` columns, with room for `rows` of them.
    pub fn new(width: usize, rows: usize) -> RowBlock {
        assert!(width > 0, "a row has at least one column");
        RowBlock {
            width,
            cells: Vec::with_capacity(width * rows),
            text: String::new(),
        }
    }

    /// Complete rows held (a row being pushed is not counted).
    pub fn len(&self) -> usize {
        self.cells.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.cells.len() < self.width
    }

    /// Bytes of text held: what a chunk's memory is bounded by besides its row count.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The value of `column` in `row`.
    pub fn value(&self, row: usize, column: usize) -> ValueRef<'_> {
        match self.cells[row * self.width + column] {
            Cell::Null => ValueRef::Null,
            Cell::Integer(n) => ValueRef::Integer(n),
            Cell::Text { start, end } => {
                ValueRef::Text(&self.text.as_bytes()[start as usize..end as usize])
            }
        }
    }

    /// The value of `column` in `row` if it is text.
    pub fn text(&self, row: usize, column: usize) -> Option<&str> {
        match self.cells[row * self.width + column] {
            Cell::Text { start, end } => Some(&self.text[start as usize..end as usize]),
            _ => None,
        }
    }

    /// The values of `row`, in column order.
    pub fn row(&self, row: usize) -> impl ExactSizeIterator<Item = ValueRef<'_>> + '_ {
        (0..self.width).map(move |column| self.value(row, column))
    }

    /// The values of `row` as statement parameters (`rusqlite::params_from_iter`).
    pub fn params(&self, row: usize) -> impl Iterator<Item = ToSqlOutput<'_>> + '_ {
        self.row(row).map(ToSqlOutput::Borrowed)
    }

    /// The values of `row`, owned.
    pub fn values(&self, row: usize) -> Vec<Value> {
        (0..self.width)
            .map(|column| match self.text(row, column) {
                Some(text) => Value::Text(text.to_owned()),
                None => match self.value(row, column) {
                    ValueRef::Integer(n) => Value::Integer(n),
                    _ => Value::Null,
                },
            })
            .collect()
    }

    pub fn push_null(&mut self) {
        self.cells.push(Cell::Null);
    }

    pub fn push_integer(&mut self, n: i64) {
        self.cells.push(Cell::Integer(n));
    }

    pub fn push_text(&mut self, s: &str) {
        self.push_text_with(|text| text.push_str(s));
    }

    /// Pushes the text `write` appends to the buffer (formatting in place, no temporary).
    ///
    /// # Panics
    /// If the buffer would pass 4 GiB: callers bound a block's text well below that.
    pub fn push_text_with(&mut self, write: impl FnOnce(&mut String)) {
        let offset = |at: usize| u32::try_from(at).expect("a row block's text stays under 4 GiB");
        let start = offset(self.text.len());
        write(&mut self.text);
        let end = offset(self.text.len());
        self.cells.push(Cell::Text { start, end });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_pushed() {
        let mut block = RowBlock::new(3, 2);
        block.push_text("a");
        block.push_null();
        block.push_integer(7);
        block.push_text_with(|t| t.push_str("bc"));
        block.push_text("");
        block.push_integer(-1);
        assert_eq!(block.len(), 2);
        assert_eq!(
            block.values(0),
            vec![Value::Text("a".into()), Value::Null, Value::Integer(7)]
        );
        assert_eq!(
            block.values(1),
            vec![
                Value::Text("bc".into()),
                Value::Text(String::new()),
                Value::Integer(-1)
            ]
        );
        assert_eq!(block.text(1, 0), Some("bc"));
        assert_eq!(block.text(0, 2), None);
        assert_eq!(block.text_len(), 3);
    }

    #[test]
    fn a_row_being_pushed_is_not_counted() {
        let mut block = RowBlock::new(2, 1);
        assert!(block.is_empty());
        block.push_integer(1);
        assert_eq!(block.len(), 0);
        assert!(block.is_empty());
        block.push_integer(2);
        assert_eq!(block.len(), 1);
    }
}
