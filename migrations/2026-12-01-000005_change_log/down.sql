DROP TRIGGER signals_log_change ON signals;
DROP FUNCTION signals_log_change();
DROP FUNCTION signal_filter_state(signals);
DROP SEQUENCE signal_changes_position;
DROP TABLE signal_changes;
