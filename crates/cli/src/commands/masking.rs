//! `scion masking check`: the personal-looking columns without a masking rule and the rules'
//! problems, as a table or JSON; exit 1 when anything is found, so CI can gate on it.

use super::{Context, Failure, spinner};
use crate::args::{MaskingCommand, Output};
use crate::output;

pub(super) async fn run(context: &Context, command: MaskingCommand) -> Result<(), Failure> {
    match command {
        MaskingCommand::Check(args) => {
            let waiting = spinner("checking the masking rules against the data".to_owned());
            let result = context.client.masking_check().await;
            waiting.finish_and_clear();
            let check = result?;
            match (args.json, context.output) {
                (true, _) | (false, Output::Json) => super::emit(&output::json(&check)),
                (false, Output::Table) => super::emit(&output::masking_check(&check)),
            }
            if check.is_clean() {
                return Ok(());
            }
            let plural = |count: usize| if count == 1 { "" } else { "s" };
            let (columns, problems) = (check.columns.len(), check.problems.len());
            Err(Failure::operation(format!(
                "{columns} personal-looking column{} without a masking rule, {problems} rule problem{}",
                plural(columns),
                plural(problems)
            )))
        }
    }
}
