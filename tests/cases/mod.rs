mod bad_inputs;
mod cdc_kill;
mod definition;
mod end_to_end;
mod examples;
mod restart;
mod resume;
mod secrets_hidden;
