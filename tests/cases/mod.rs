mod bad_inputs;
mod cdc_kill;
mod console;
mod definition;
mod end_to_end;
mod examples;
mod resume;
mod secrets_hidden;
