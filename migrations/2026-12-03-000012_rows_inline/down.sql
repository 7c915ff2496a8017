ALTER TABLE signals RESET (toast_tuple_target);
