// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

use crate::rvm::instructions::FunctionCallParams;
use crate::rvm::program::{Program, RuleInfo, RuleType};
use crate::value::Value;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::convert::TryFrom as _;
use core::mem;

use super::context::CallRuleContext;
use super::errors::{Result, VmError};
use super::execution_model::{
    ExecutionFrame, ExecutionMode, FrameKind, RuleFrameData, RuleFramePhase,
};
use super::machine::RegoVM;

/// How many distinct argument lists a function remembers per execution. A function called with more (typically a
/// per-element helper, called once per container) stops remembering for the rest of the execution, so a lookup
/// costs at most this many argument comparisons and the memo never grows with the request.
const FUNCTION_MEMO_ENTRIES: usize = 8;

/// The remembered calls of one function in one execution (policyctl patch 6).
#[derive(Debug, Default, Clone)]
pub(super) struct FunctionMemo {
    entries: Vec<(Vec<Value>, Value)>,
    /// Set once the function was called with more than [`FUNCTION_MEMO_ENTRIES`] distinct argument lists.
    disabled: bool,
}

/// What the function memo knows about a call.
enum MemoLookup {
    /// The value remembered for these arguments.
    Hit(Value),
    /// Not remembered yet: the call's value is to be remembered.
    Miss,
    /// The function stopped remembering in this execution.
    Off,
}

impl RegoVM {
    /// Returns true if the error must never be silently absorbed by rule
    /// evaluation: resource-limit violations, and conflicting values of a
    /// complete rule or function (an evaluation error in OPA, not a failed
    /// body).
    pub(super) const fn is_fatal_vm_error(err: &VmError) -> bool {
        matches!(
            err,
            VmError::ConflictingRuleValues { .. }
                | VmError::ConflictingFunctionValues { .. }
                | VmError::TimeLimitExceeded { .. }
                | VmError::MemoryLimitExceeded { .. }
                | VmError::MemoryBudgetExceeded { .. }
                | VmError::RegexSizeLimitExceeded { .. }
                | VmError::InstructionLimitExceeded { .. }
                | VmError::NumericOverflow { .. }
        )
    }

    /// The error for a complete rule or function whose definitions produced
    /// different values.
    fn conflict_error(&self, rule_info: &RuleInfo) -> VmError {
        if rule_info.function_info.is_some() {
            VmError::ConflictingFunctionValues {
                function: rule_info.name.clone(),
                pc: self.pc,
            }
        } else {
            VmError::ConflictingRuleValues {
                rule: rule_info.name.clone(),
                pc: self.pc,
            }
        }
    }

    /// policyctl patch 14: the conflict error of the rule or function whose body is running (`RuleYield`).
    #[cold]
    #[inline(never)]
    pub(super) fn current_rule_conflict(&self, program: &Program) -> VmError {
        let rule_index = self
            .call_rule_stack
            .last()
            .map(|ctx| ctx.rule_index)
            .or_else(|| {
                (0..self.execution_stack.len()).rev().find_map(|i| {
                    match self.execution_stack.get(i).map(|frame| &frame.kind) {
                        Some(FrameKind::Rule(data)) => Some(data.rule_index),
                        _ => None,
                    }
                })
            });
        match rule_index.and_then(|i| program.rule_infos.get(usize::from(i))) {
            Some(rule_info) => self.conflict_error(rule_info),
            None => VmError::ConflictingRuleValues {
                rule: String::from("(unknown rule)"),
                pc: self.pc,
            },
        }
    }

    /// Prepare the register window for the next body of a rule: the first
    /// `retained` registers (result and arguments) keep their values, the rest
    /// up to `total` become undefined, and the window has exactly `total`
    /// registers. Same effect as `resize(retained)` followed by
    /// `resize(total)`, without dropping and re-growing the tail.
    fn reset_rule_registers(&mut self, retained: usize, total: usize) {
        let registers = &mut self.registers;
        if retained >= total {
            registers.resize(retained, Value::Undefined);
            registers.truncate(total);
            return;
        }
        registers.truncate(total);
        for slot in registers.iter_mut().skip(retained) {
            // policyctl patch 8: no drop call for a register that is already undefined.
            if !matches!(slot, Value::Undefined) {
                *slot = Value::Undefined;
            }
        }
        registers.resize_with(total, || Value::Undefined);
    }

    /// Run a rule's definitions in a register window of its own and give its value (run-to-completion mode):
    /// the caller's registers, loops and comprehensions are set aside for the call and restored afterwards, also
    /// when a body fails with an error that ends the evaluation.
    pub(super) fn execute_rule_definitions_common(
        &mut self,
        program: &Program,
        rule_info: &RuleInfo,
        function_call_params: Option<&FunctionCallParams>,
    ) -> Result<Value> {
        let num_registers = usize::from(rule_info.num_registers);
        let mut register_window = self.new_register_window();
        register_window.clear();
        register_window.reserve(num_registers);

        register_window.push(Value::Undefined);

        let num_retained_registers = match function_call_params {
            Some(params) => {
                for &arg in params.arg_registers() {
                    register_window.push(self.get_register(arg)?.clone());
                }
                self.checked_add_one(params.arg_count(), "retained function registers")?
            }
            _ => match rule_info.rule_type {
                RuleType::PartialSet | RuleType::PartialObject => 1,
                RuleType::Complete => 0,
            },
        };

        // policyctl patch 9: one move each way for the caller's state (it was swapped through temporaries), and the
        // restore below runs on every way out of the bodies.
        let caller_registers = mem::replace(&mut self.registers, register_window);
        self.register_stack.push(caller_registers);
        let caller_loops = mem::take(&mut self.loop_stack);
        let caller_comprehensions = mem::take(&mut self.comprehension_stack);

        let outcome = self.run_rule_bodies(
            program,
            rule_info,
            num_retained_registers,
            num_registers,
        );

        if let Some(caller_registers) = self.register_stack.pop() {
            let rule_window = mem::replace(&mut self.registers, caller_registers);
            self.return_register_window(rule_window);
        }
        self.loop_stack = caller_loops;
        self.comprehension_stack = caller_comprehensions;

        outcome
    }

    /// Run the bodies of a rule's definitions in the current register window, in order, and give the rule's value:
    /// the first successful value of a complete rule or function (every later successful definition must agree),
    /// or the result register of a partial rule, into which every successful body has added its contributions.
    fn run_rule_bodies(
        &mut self,
        program: &Program,
        rule_info: &RuleInfo,
        num_retained_registers: usize,
        num_registers: usize,
    ) -> Result<Value> {
        let mut first_successful_result: Option<Value> = None;
        let single_valued =
            matches!(rule_info.rule_type, RuleType::Complete) || rule_info.function_info.is_some();
        let result_reg = rule_info.result_reg;

        'outer: for (def_idx, definition_bodies) in rule_info.definitions.iter().enumerate() {
            let destructuring = rule_info.destructuring_blocks.get(def_idx).copied().flatten();
            for (body_entry_point_idx, &body_entry_point) in definition_bodies.iter().enumerate() {
                if let Some(ctx) = self.call_rule_stack.last_mut() {
                    ctx.current_body_index = body_entry_point_idx;
                    ctx.current_definition_index = def_idx;
                }

                self.reset_rule_registers(num_retained_registers, num_registers);

                if let Some(destructuring_entry_point) = destructuring {
                    match self.run_parameter_block(program, destructuring_entry_point) {
                        Ok(()) => {}
                        Err(e) if Self::is_fatal_vm_error(&e) => return Err(e),
                        Err(_) => continue 'outer,
                    }
                }

                match self.run_segment(program, body_entry_point) {
                    Ok(_) => {
                        if single_valued {
                            let register_count = self.registers.len();
                            let slot = self
                                .registers
                                .get_mut(usize::from(result_reg))
                                .ok_or_else(|| VmError::RegisterIndexOutOfBounds {
                                    index: result_reg,
                                    pc: self.pc,
                                    register_count,
                                })?;
                            if matches!(*slot, Value::Undefined) {
                                // The body ran to its end but its value is undefined
                                // (e.g. `t := c.a.b` with `c.a` missing): the body
                                // failed, so the next `else` is tried, as in OPA.
                                continue;
                            }
                            // The value is moved out of the window: the next body starts with its result
                            // register reset (`RuleInit`), and the window is dropped after the call.
                            let current_result = mem::replace(slot, Value::Undefined);
                            if let Some(ref expected) = first_successful_result {
                                if *expected != current_result {
                                    // A conflict is an evaluation error (OPA's
                                    // eval_conflict_error), not an undefined rule.
                                    return Err(self.conflict_error(rule_info));
                                }
                            } else {
                                first_successful_result = Some(current_result);
                                // All definitions produce the same static value;
                                // no need to verify consistency with the rest.
                                if rule_info.early_exit_on_first_success {
                                    break 'outer;
                                }
                            }
                        }

                        // Independent bodies of partial rules accumulate their
                        // contributions. `else` bodies (and all complete/function
                        // rules) preserve first-success semantics.
                        let next_is_else = rule_info
                            .else_bodies
                            .get(def_idx)
                            .and_then(|bodies| {
                                body_entry_point_idx
                                    .checked_add(1)
                                    .and_then(|next_idx| bodies.get(next_idx))
                            })
                            .copied()
                            .unwrap_or(false);
                        if !matches!(
                            rule_info.rule_type,
                            RuleType::PartialSet | RuleType::PartialObject
                        ) || next_is_else
                        {
                            break;
                        }
                    }
                    Err(e) if Self::is_fatal_vm_error(&e) => return Err(e),
                    Err(_) => {}
                }
            }
        }

        if let Some(successful_result) = first_successful_result {
            return Ok(successful_result);
        }
        // A partial rule's accumulated value, or an undefined complete rule: moved out of the window, which is
        // dropped after the call.
        let register_count = self.registers.len();
        let slot = self
            .registers
            .get_mut(usize::from(result_reg))
            .ok_or_else(|| VmError::RegisterIndexOutOfBounds {
                index: result_reg,
                pc: self.pc,
                register_count,
            })?;
        Ok(mem::replace(slot, Value::Undefined))
    }

    pub(super) fn execute_call_rule_common(
        &mut self,
        dest: u8,
        rule_index: u16,
        function_call_params: Option<&FunctionCallParams>,
    ) -> Result<()> {
        let rule_idx = usize::from(rule_index);

        if rule_idx >= self.rule_cache.len() {
            return Err(VmError::RuleIndexOutOfBounds {
                index: rule_index,
                pc: self.pc,
                available: self.rule_cache.len(),
            });
        }

        // Borrow the rule's metadata through a handle on the shared program
        // instead of cloning it (its name, else/destructuring tables and
        // parameter names) on every call.
        let program = Arc::clone(&self.program);
        let rule_info = program
            .rule_infos
            .get(rule_idx)
            .ok_or_else(|| VmError::RuleInfoMissing {
                index: rule_index,
                pc: self.pc,
                available: program.rule_infos.len(),
            })?;

        let is_function_rule = rule_info.function_info.is_some();

        if !is_function_rule {
            let (ref computed, ref cached_result) =
                *self
                    .rule_cache
                    .get(rule_idx)
                    .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                        index: rule_index,
                        pc: self.pc,
                        available: self.rule_cache.len(),
                    })?;
            if *computed {
                self.set_register(dest, cached_result.clone())?;
                return Ok(());
            }
        }

        // A function called again with the same arguments: its remembered value.
        let memo_params = match function_call_params {
            Some(params) if is_function_rule => match self.function_memo_lookup(rule_idx, params) {
                MemoLookup::Hit(value) => {
                    self.set_register(dest, value)?;
                    return Ok(());
                }
                MemoLookup::Miss => Some(params),
                MemoLookup::Off => None,
            },
            _ => None,
        };

        if rule_info.definitions.is_empty() {
            // No compiled definitions — check for a default value before returning Undefined.
            // Default-only rules (e.g., `default deny := true`) have no body definitions
            // but their default value was evaluated at compile time and stored as a literal.
            let result = rule_info
                .default_literal_index
                .and_then(|idx| program.literals.get(usize::from(idx)).cloned())
                .unwrap_or(Value::Undefined);
            if !is_function_rule {
                let available = self.rule_cache.len();
                let entry =
                    self.rule_cache
                        .get_mut(rule_idx)
                        .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                            index: rule_index,
                            pc: self.pc,
                            available,
                        })?;
                *entry = (true, result.clone());
            }
            self.set_register(dest, result)?;
            return Ok(());
        }

        self.call_rule_stack.push(CallRuleContext {
            return_pc: self.pc,
            dest_reg: dest,
            result_reg: rule_info.result_reg,
            rule_index,
            rule_type: rule_info.rule_type.clone(),
            current_definition_index: 0,
            current_body_index: 0,
        });

        let result =
            self.execute_rule_definitions_common(&program, rule_info, function_call_params)?;

        let call_context = self
            .call_rule_stack
            .pop()
            .ok_or_else(|| VmError::CallRuleStackUnderflow { pc: self.pc })?;
        // Stack discipline: the context we just popped must belong to the
        // rule we are finalizing. A mismatch indicates a missing push or an
        // extra pop somewhere in this rule's execution and would otherwise
        // silently restore the wrong return_pc / rule_type. Surface as a
        // typed VmError so the contract holds the same in debug and release
        // builds (avoiding FFI poisoning via a debug-only panic).
        if rule_index != call_context.rule_index {
            return Err(VmError::CallRuleStackMismatch {
                expected: rule_index,
                actual: call_context.rule_index,
                pc: self.pc,
            });
        }
        self.pc = call_context.return_pc;

        // An undefined value becomes the empty set or object of a partial rule, or a complete rule's default.
        let final_value = if matches!(result, Value::Undefined) {
            match call_context.rule_type {
                RuleType::PartialSet => Value::new_set(),
                RuleType::PartialObject => Value::new_object(),
                RuleType::Complete => rule_info
                    .default_literal_index
                    .and_then(|idx| program.literals.get(usize::from(idx)).cloned())
                    .unwrap_or(Value::Undefined),
            }
        } else {
            result
        };

        // Remembered before the destination is written: it may be one of the argument registers.
        if let Some(params) = memo_params {
            self.function_memo_remember(rule_idx, params, &final_value);
        }
        if is_function_rule {
            self.set_register(dest, final_value)?;
        } else {
            self.set_register(dest, final_value.clone())?;
            let available = self.rule_cache.len();
            let entry = self
                .rule_cache
                .get_mut(rule_idx)
                .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                    index: rule_index,
                    pc: self.pc,
                    available,
                })?;
            *entry = (true, final_value);
        }
        Ok(())
    }

    /// The remembered value of a function called with the arguments in `params`' registers, compared in place.
    fn function_memo_lookup(&self, rule_idx: usize, params: &FunctionCallParams) -> MemoLookup {
        let Some(memo) = self.function_memo.get(rule_idx) else {
            return MemoLookup::Miss;
        };
        if memo.disabled {
            return MemoLookup::Off;
        }
        let registers = params.arg_registers();
        memo.entries
            .iter()
            .find(|(args, _)| {
                args.len() == registers.len()
                    && args.iter().zip(registers).all(|(arg, &register)| {
                        self.registers.get(usize::from(register)) == Some(arg)
                    })
            })
            .map_or(MemoLookup::Miss, |(_, value)| MemoLookup::Hit(value.clone()))
    }

    /// Remember a function's value for the arguments in `params`' registers, up to [`FUNCTION_MEMO_ENTRIES`]
    /// argument lists per function; the next distinct list stops the remembering for the rest of the execution.
    /// The argument list is built only here, for a call that is remembered (policyctl patch 9): the lookup compares
    /// the remembered lists with the registers in place.
    fn function_memo_remember(
        &mut self,
        rule_idx: usize,
        params: &FunctionCallParams,
        value: &Value,
    ) {
        if self.function_memo.len() <= rule_idx {
            let len = self
                .program
                .rule_infos
                .len()
                .max(rule_idx.saturating_add(1));
            self.function_memo.resize_with(len, FunctionMemo::default);
        }
        let Some(memo) = self.function_memo.get(rule_idx) else {
            return;
        };
        if memo.disabled {
            return;
        }
        let full = memo.entries.len() >= FUNCTION_MEMO_ENTRIES;
        let args: Option<Vec<Value>> = if full {
            None
        } else {
            params
                .arg_registers()
                .iter()
                .map(|&register| self.registers.get(usize::from(register)).cloned())
                .collect()
        };
        let Some(memo) = self.function_memo.get_mut(rule_idx) else {
            return;
        };
        match args {
            Some(args) => memo.entries.push((args, value.clone())),
            None if full => {
                memo.disabled = true;
                memo.entries = Vec::new();
            }
            // An argument register out of range: the call is not remembered.
            None => {}
        }
    }

    pub(super) fn execute_call_rule(&mut self, dest: u8, rule_index: u16) -> Result<()> {
        match self.execution_mode {
            ExecutionMode::RunToCompletion => self.execute_call_rule_common(dest, rule_index, None),
            ExecutionMode::Suspendable => {
                self.execute_call_rule_suspendable(dest, rule_index, None)
            }
        }
    }

    pub(super) fn execute_call_rule_suspendable(
        &mut self,
        dest: u8,
        rule_index: u16,
        function_call_params: Option<&FunctionCallParams>,
    ) -> Result<()> {
        let rule_idx = usize::from(rule_index);

        if rule_idx >= self.rule_cache.len() {
            return Err(VmError::RuleIndexOutOfBounds {
                index: rule_index,
                pc: self.pc,
                available: self.rule_cache.len(),
            });
        }

        // Borrow the rule's metadata through a handle on the shared program
        // instead of cloning it (its name, else/destructuring tables and
        // parameter names) on every call.
        let program = Arc::clone(&self.program);
        let rule_info = program
            .rule_infos
            .get(rule_idx)
            .ok_or_else(|| VmError::RuleInfoMissing {
                index: rule_index,
                pc: self.pc,
                available: program.rule_infos.len(),
            })?;

        let is_function_rule = rule_info.function_info.is_some();

        if !is_function_rule {
            let (ref computed, ref cached_result) =
                *self
                    .rule_cache
                    .get(rule_idx)
                    .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                        index: rule_index,
                        pc: self.pc,
                        available: self.rule_cache.len(),
                    })?;
            if *computed {
                self.set_register(dest, cached_result.clone())?;
                return Ok(());
            }
        }

        if rule_info.definitions.is_empty() {
            // No compiled definitions — check for a default value before returning Undefined.
            let result = rule_info
                .default_literal_index
                .and_then(|idx| self.program.literals.get(usize::from(idx)).cloned())
                .unwrap_or(Value::Undefined);
            if !is_function_rule {
                let available = self.rule_cache.len();
                let entry =
                    self.rule_cache
                        .get_mut(rule_idx)
                        .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                            index: rule_index,
                            pc: self.pc,
                            available,
                        })?;
                *entry = (true, result.clone());
            }
            let dest_index = usize::from(dest);
            if self.registers.len() <= dest_index {
                let new_len =
                    self.checked_add_one(dest_index, "register capacity for destination")?;
                self.registers.resize(new_len, Value::Undefined);
            }
            self.set_register(dest, result)?;
            return Ok(());
        }

        let num_registers = usize::from(rule_info.num_registers);

        let num_retained_registers = match function_call_params {
            Some(params) => {
                self.checked_add_one(params.arg_count(), "retained function registers")?
            }
            None => match rule_info.rule_type {
                RuleType::PartialSet | RuleType::PartialObject => 1,
                RuleType::Complete => 0,
            },
        };

        let mut register_window = self.new_register_window();
        register_window.clear();
        register_window.reserve(num_registers);
        register_window.push(Value::Undefined);

        if let Some(params) = function_call_params {
            for &arg in params.arg_registers() {
                register_window.push(self.get_register(arg)?.clone());
            }
        }

        let mut saved_registers = Vec::default();
        mem::swap(&mut saved_registers, &mut self.registers);
        self.registers = register_window;

        let mut saved_loop_stack = Vec::default();
        mem::swap(&mut saved_loop_stack, &mut self.loop_stack);

        let mut saved_comprehension_stack = Vec::default();
        mem::swap(
            &mut saved_comprehension_stack,
            &mut self.comprehension_stack,
        );

        self.loop_stack.clear();
        self.comprehension_stack.clear();

        self.call_rule_stack.push(CallRuleContext {
            return_pc: self.pc,
            dest_reg: dest,
            result_reg: rule_info.result_reg,
            rule_index,
            rule_type: rule_info.rule_type.clone(),
            current_definition_index: 0,
            current_body_index: 0,
        });

        let mut frame_data = RuleFrameData {
            return_pc: self.pc,
            dest_reg: dest,
            rule_index,
            current_definition_index: 0,
            current_body_index: 0,
            total_definitions: rule_info.definitions.len(),
            phase: RuleFramePhase::Initializing,
            accumulated_result: None,
            any_body_succeeded: false,
            rule_failed_due_to_inconsistency: false,
            rule_type: rule_info.rule_type.clone(),
            result_reg: rule_info.result_reg,
            is_function_rule,
            num_registers,
            num_retained_registers,
            saved_registers,
            saved_loop_stack,
            saved_comprehension_stack,
        };

        let initial_pc = self
            .prepare_rule_frame_initial_pc(&mut frame_data, rule_info)?
            .ok_or_else(|| VmError::RuleFrameMissingInitialPc { pc: self.pc })?;

        let frame = ExecutionFrame::new(initial_pc, FrameKind::Rule(frame_data));
        self.execution_stack.push(frame);

        Ok(())
    }

    pub(super) fn execute_rule_init(&mut self, result_reg: u8, _rule_index: u16) -> Result<()> {
        let current_ctx = self
            .call_rule_stack
            .last_mut()
            .ok_or_else(|| VmError::CallRuleStackUnderflow { pc: self.pc })?;
        current_ctx.result_reg = result_reg;
        match current_ctx.rule_type {
            RuleType::Complete => {
                self.set_register(result_reg, Value::Undefined)?;
            }
            RuleType::PartialSet => {
                if current_ctx.current_definition_index == 0 && current_ctx.current_body_index == 0
                {
                    self.set_register(result_reg, Value::new_set())?;
                }
            }
            RuleType::PartialObject => {
                if current_ctx.current_definition_index == 0 && current_ctx.current_body_index == 0
                {
                    self.set_register(result_reg, Value::new_object())?;
                }
            }
        }
        Ok(())
    }

    pub(super) const fn execute_rule_return(&mut self) -> Result<()> {
        let _ = self;
        Ok(())
    }

    fn prepare_rule_frame_initial_pc(
        &mut self,
        frame_data: &mut RuleFrameData,
        rule_info: &RuleInfo,
    ) -> Result<Option<usize>> {
        frame_data.current_definition_index = 0;
        frame_data.current_body_index = 0;
        frame_data.phase = RuleFramePhase::Initializing;
        self.rule_frame_schedule_segment(frame_data, rule_info)
    }

    fn rule_frame_schedule_segment(
        &mut self,
        frame_data: &mut RuleFrameData,
        rule_info: &RuleInfo,
    ) -> Result<Option<usize>> {
        if frame_data.rule_failed_due_to_inconsistency {
            frame_data.phase = RuleFramePhase::Finalizing;
            return Ok(None);
        }

        while frame_data.current_definition_index < frame_data.total_definitions {
            let definition_bodies = match rule_info
                .definitions
                .get(frame_data.current_definition_index)
            {
                Some(bodies) => bodies,
                None => {
                    frame_data.current_definition_index = frame_data.total_definitions;
                    break;
                }
            };

            if frame_data.current_body_index < definition_bodies.len() {
                if let Some(ctx) = self.call_rule_stack.last_mut() {
                    ctx.current_definition_index = frame_data.current_definition_index;
                    ctx.current_body_index = frame_data.current_body_index;
                }

                self.reset_rule_registers(
                    frame_data.num_retained_registers,
                    frame_data.num_registers,
                );

                if let Some(destructuring_entry_point) = rule_info
                    .destructuring_blocks
                    .get(frame_data.current_definition_index)
                    .and_then(|opt| *opt)
                {
                    frame_data.phase = RuleFramePhase::ExecutingDestructuring;
                    let next_pc =
                        self.convert_pc(destructuring_entry_point, "destructuring entry point")?;
                    return Ok(Some(next_pc));
                }

                if let Some(&body_entry_point) =
                    definition_bodies.get(frame_data.current_body_index)
                {
                    frame_data.phase = RuleFramePhase::ExecutingBody;
                    let next_pc = self.convert_pc(body_entry_point, "rule body entry point")?;
                    return Ok(Some(next_pc));
                }

                self.increment_counter(
                    &mut frame_data.current_definition_index,
                    "rule definition index",
                )?;
                frame_data.current_body_index = 0;
            } else {
                self.increment_counter(
                    &mut frame_data.current_definition_index,
                    "rule definition index",
                )?;
                frame_data.current_body_index = 0;
            }
        }

        frame_data.phase = RuleFramePhase::Finalizing;
        Ok(None)
    }

    fn rule_frame_after_destructuring_success(
        &mut self,
        frame_data: &mut RuleFrameData,
        rule_info: &RuleInfo,
    ) -> Result<Option<usize>> {
        frame_data.phase = RuleFramePhase::ExecutingBody;
        let definition_bodies = match rule_info
            .definitions
            .get(frame_data.current_definition_index)
        {
            Some(bodies) => bodies,
            None => {
                frame_data.current_definition_index = frame_data.total_definitions;
                return Ok(None);
            }
        };

        if let Some(&entry_point) = definition_bodies.get(frame_data.current_body_index) {
            let next_pc = self.convert_pc(entry_point, "rule body entry point")?;
            Ok(Some(next_pc))
        } else {
            self.increment_counter(&mut frame_data.current_body_index, "rule body index")?;
            self.rule_frame_schedule_segment(frame_data, rule_info)
        }
    }

    fn rule_frame_after_failure(
        &mut self,
        frame_data: &mut RuleFrameData,
        rule_info: &RuleInfo,
    ) -> Result<Option<usize>> {
        self.increment_counter(&mut frame_data.current_body_index, "rule body index")?;
        self.rule_frame_schedule_segment(frame_data, rule_info)
    }

    fn rule_frame_after_success(
        &mut self,
        frame_data: &mut RuleFrameData,
        rule_info: &RuleInfo,
    ) -> Result<Option<usize>> {
        if matches!(frame_data.rule_type, RuleType::Complete) || frame_data.is_function_rule {
            let current_result = self
                .registers
                .get(usize::from(frame_data.result_reg))
                .cloned()
                .unwrap_or(Value::Undefined);

            if matches!(current_result, Value::Undefined) {
                // The body ran to its end but its value is undefined (e.g.
                // `t := c.a.b` with `c.a` missing): the body failed, so the next
                // `else` is tried, as in OPA.
                return self.rule_frame_after_failure(frame_data, rule_info);
            }
            frame_data.any_body_succeeded = true;
            if let Some(ref expected) = frame_data.accumulated_result {
                if *expected != current_result {
                    // A conflict is an evaluation error (OPA's
                    // eval_conflict_error), not an undefined rule.
                    frame_data.rule_failed_due_to_inconsistency = true;
                    return Err(self.conflict_error(rule_info));
                }
            } else {
                frame_data.accumulated_result = Some(current_result);
                // All definitions produce the same static value;
                // skip remaining definitions.
                if rule_info.early_exit_on_first_success {
                    frame_data.current_definition_index = frame_data.total_definitions;
                    frame_data.phase = RuleFramePhase::Finalizing;
                    return Ok(None);
                }
            }
        } else {
            frame_data.any_body_succeeded = true;
        }

        if let Some(definition_bodies) = rule_info
            .definitions
            .get(frame_data.current_definition_index)
        {
            frame_data.current_body_index = definition_bodies.len();
        } else {
            self.increment_counter(&mut frame_data.current_body_index, "rule body index")?;
        }
        self.rule_frame_schedule_segment(frame_data, rule_info)
    }

    pub(super) fn finalize_rule_frame_data(&mut self, frame_data: RuleFrameData) -> Result<Value> {
        let RuleFrameData {
            return_pc,
            dest_reg,
            rule_index,
            accumulated_result,
            rule_failed_due_to_inconsistency,
            rule_type,
            result_reg,
            is_function_rule,
            saved_registers,
            saved_loop_stack,
            saved_comprehension_stack,
            ..
        } = frame_data;

        let rule_idx = usize::from(rule_index);
        // Borrow the rule's metadata through a handle on the shared program
        // instead of cloning it (its name, else/destructuring tables and
        // parameter names) on every call.
        let program = Arc::clone(&self.program);
        let rule_info = program
            .rule_infos
            .get(rule_idx)
            .ok_or_else(|| VmError::RuleInfoMissing {
                index: rule_index,
                pc: self.pc,
                available: program.rule_infos.len(),
            })?;

        let result_from_rule = if rule_failed_due_to_inconsistency {
            Value::Undefined
        } else if let Some(value) = accumulated_result {
            value
        } else {
            self.registers
                .get(usize::from(result_reg))
                .cloned()
                .unwrap_or(Value::Undefined)
        };

        let mut current_window = Vec::default();
        mem::swap(&mut current_window, &mut self.registers);
        self.return_register_window(current_window);

        self.loop_stack = saved_loop_stack;
        self.comprehension_stack = saved_comprehension_stack;

        let mut parent_registers = saved_registers;
        let dest_idx = usize::from(dest_reg);
        if parent_registers.len() <= dest_idx {
            let new_len = self.checked_add_one(dest_idx, "parent register capacity")?;
            parent_registers.resize(new_len, Value::Undefined);
        }

        {
            let register_count = parent_registers.len();
            let slot =
                parent_registers
                    .get_mut(dest_idx)
                    .ok_or_else(|| VmError::RegisterIndexOutOfBounds {
                        index: dest_reg,
                        pc: self.pc,
                        register_count,
                    })?;
            *slot = result_from_rule.clone();
        }

        let needs_default = parent_registers
            .get(dest_idx)
            .is_some_and(|value| matches!(*value, Value::Undefined));

        if needs_default && !rule_failed_due_to_inconsistency {
            match rule_type {
                RuleType::PartialSet => {
                    let register_count = parent_registers.len();
                    let slot = parent_registers.get_mut(dest_idx).ok_or_else(||
                        VmError::RegisterIndexOutOfBounds {
                            index: dest_reg,
                            pc: self.pc,
                            register_count,
                        },
                    )?;
                    *slot = Value::new_set();
                }
                RuleType::PartialObject => {
                    let register_count = parent_registers.len();
                    let slot = parent_registers.get_mut(dest_idx).ok_or_else(||
                        VmError::RegisterIndexOutOfBounds {
                            index: dest_reg,
                            pc: self.pc,
                            register_count,
                        },
                    )?;
                    *slot = Value::new_object();
                }
                RuleType::Complete => {
                    if let Some(default_literal_index) = rule_info.default_literal_index {
                        if let Some(default_value) = self
                            .program
                            .literals
                            .get(usize::from(default_literal_index))
                            .cloned()
                        {
                            let register_count = parent_registers.len();
                            let slot = parent_registers.get_mut(dest_idx).ok_or_else(||
                                VmError::RegisterIndexOutOfBounds {
                                    index: dest_reg,
                                    pc: self.pc,
                                    register_count,
                                },
                            )?;
                            *slot = default_value;
                        }
                    }
                }
            }
        }

        let register_count = parent_registers.len();
        let final_value =
            parent_registers
                .get(dest_idx)
                .cloned()
                .ok_or_else(|| VmError::RegisterIndexOutOfBounds {
                    index: dest_reg,
                    pc: self.pc,
                    register_count,
                })?;

        if !is_function_rule {
            let available = self.rule_cache.len();
            let entry = self
                .rule_cache
                .get_mut(rule_idx)
                .ok_or_else(|| VmError::RuleIndexOutOfBounds {
                    index: rule_index,
                    pc: self.pc,
                    available,
                })?;
            *entry = (true, final_value.clone());
        }

        self.registers = parent_registers;

        // Underflow here means malformed/poisoned program state; surface as a
        // typed error rather than a debug-only panic so the public load_program
        // contract holds the same in debug and release.
        if self.call_rule_stack.pop().is_none() {
            return Err(VmError::CallRuleStackUnderflow { pc: self.pc });
        }

        self.pc = return_pc;

        Ok(final_value)
    }

    pub(super) fn handle_rule_break_event(
        &mut self,
        frame_data: &mut RuleFrameData,
    ) -> Result<Option<usize>> {
        // A handle on the shared program lets the metadata be borrowed
        // while the VM is mutated, instead of cloned.
        let program = Arc::clone(&self.program);
        let rule_info = program
            .rule_infos
            .get(usize::from(frame_data.rule_index))
            .ok_or_else(|| self.rule_info_missing(frame_data.rule_index))?;
        match frame_data.phase {
            RuleFramePhase::ExecutingDestructuring => {
                self.rule_frame_after_destructuring_success(frame_data, rule_info)
            }
            RuleFramePhase::ExecutingBody => self.rule_frame_after_success(frame_data, rule_info),
            RuleFramePhase::Initializing | RuleFramePhase::Finalizing => Ok(None),
        }
    }

    pub(super) fn handle_rule_error_event(
        &mut self,
        frame_data: &mut RuleFrameData,
    ) -> Result<Option<usize>> {
        // A handle on the shared program lets the metadata be borrowed
        // while the VM is mutated, instead of cloned.
        let program = Arc::clone(&self.program);
        let rule_info = program
            .rule_infos
            .get(usize::from(frame_data.rule_index))
            .ok_or_else(|| self.rule_info_missing(frame_data.rule_index))?;
        self.rule_frame_after_failure(frame_data, rule_info)
    }

    /// The error for a rule index with no metadata in the program.
    fn rule_info_missing(&self, rule_index: u16) -> VmError {
        VmError::RuleInfoMissing {
            index: rule_index,
            pc: self.pc,
            available: self.program.rule_infos.len(),
        }
    }

    pub(super) fn checked_add_one(&self, value: usize, context: &'static str) -> Result<usize> {
        value
            .checked_add(1)
            .ok_or_else(|| VmError::ArithmeticError {
                message: format!("{context} overflow"),
                pc: self.pc,
            })
    }

    pub(super) fn increment_counter(
        &self,
        counter: &mut usize,
        context: &'static str,
    ) -> Result<()> {
        *counter = self.checked_add_one(*counter, context)?;
        Ok(())
    }

    pub(super) fn convert_pc(&self, value: u32, context: &'static str) -> Result<usize> {
        usize::try_from(value).map_err(|_| VmError::ArithmeticError {
            message: format!("{context} exceeds addressable range"),
            pc: self.pc,
        })
    }
}
