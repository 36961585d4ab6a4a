//! Rendering templates within bounds.
//!
//! A template is a program: a chat template comes with a model file, a task
//! template from a `--prompts` folder, and either can loop for hours or
//! grow a string without end. Fuel bounds the steps a rendering takes and
//! a cap bounds what it writes, so that a hostile or broken template costs
//! a second and a clear error, never the machine's memory.

use std::io::Write;

use minijinja::{Environment, Template};

/// Steps one rendering may take. The chat templates of the models glot
/// runs take a few thousand for a conversation; a template over budget
/// is looping over something far larger than a conversation.
const FUEL: u64 = 20_000_000;

/// Bytes a rendering may write besides the text it is given: the
/// template's own words and markup, many times over.
const SLACK: usize = 1 << 20;

/// An environment with the settings every template of glot's shares:
/// Jinja blocks that take their own lines, as transformers renders, and
/// the fuel above.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env
}

/// `template` rendered with `ctx`, refused once it writes more than twice
/// `given` bytes (the text the context holds) plus a megabyte: a prompt
/// that repeats the article once is fine, one that multiplies it is not.
pub fn render(template: &Template, ctx: minijinja::Value, given: usize) -> Result<String, String> {
    let limit = given.saturating_mul(2).saturating_add(SLACK);
    let mut out = Capped {
        buf: Vec::new(),
        limit,
    };
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| "wrote invalid UTF-8".to_string()),
        Err(_) if out.buf.len() > limit => Err(format!(
            "wrote more than {limit} bytes for {given} bytes of text"
        )),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
            "took more than {FUEL} steps (a loop far larger than a conversation)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A buffer that fails the write which would take it past `limit`.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.buf.extend_from_slice(data);
            return Err(std::io::Error::other("output cap reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, given: usize) -> Result<String, String> {
        let mut env = environment();
        env.add_template_owned("t", source.to_string()).unwrap();
        render(
            &env.get_template("t").unwrap(),
            minijinja::context! {},
            given,
        )
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let err = run(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            0,
        )
        .unwrap_err();
        assert!(err.contains("steps"), "{err}");
    }

    #[test]
    fn output_beyond_the_cap_is_refused() {
        let err = run("{% for i in range(90000) %}{{ 'x' * 100 }}{% endfor %}", 10).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        // The same output is fine for a text large enough to explain it.
        assert_eq!(
            run(
                "{% for i in range(90000) %}{{ 'x' * 100 }}{% endfor %}",
                9_000_000
            )
            .unwrap()
            .len(),
            9_000_000
        );
    }
}
