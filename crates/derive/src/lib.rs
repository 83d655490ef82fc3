//! `#[derive(ArrowRecord)]`: a struct's typed path into Arrow's builders, for the file
//! sink (`ferroflow::connectors::filesystem::ArrowRecord`). Each named field becomes a
//! column, in order; `Option<T>` fields are nullable. Field types: `bool`, `i8`–`i64`,
//! `u8`–`u64`, `f32`, `f64`, `String`, `Vec<u8>` (anything implementing `ArrowValue`),
//! and with an attribute:
//!
//! - `#[arrow(timestamp = "ms")]` (`s`, `ms`, `us`, `ns`), optionally `tz = "UTC"`: an
//!   integer epoch value (`i64` or anything `Into<i64>`);
//! - `#[arrow(decimal(12, 2))]`: an unscaled integer (`Into<i128>`, e.g. cents);
//! - `#[arrow(date)]`: days since 1970-01-01 (`Into<i32>`);
//! - `#[arrow(rename = "name")]` for the column's name, `#[arrow(skip)]` to leave a field out.
//!
//! On the struct, `#[arrow(crate = "path")]` names where the trait lives when it is not
//! `::ferroflow::connectors::filesystem` (`ferroflow_connectors::filesystem` for a crate
//! that depends on the connectors directly).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, Data, DeriveInput, Fields, GenericArgument, LitStr, PathArguments, Type,
};

/// Derives `ArrowRecord`; see the crate documentation for the attributes.
#[proc_macro_derive(ArrowRecord, attributes(arrow))]
pub fn derive_arrow_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// How a column is built.
enum Kind {
    /// Through the value type's `ArrowValue` impl.
    Value,
    /// A primitive builder of this Arrow type, with this data type, from `Into<native>`.
    Primitive {
        arrow: Tokens,
        data_type: Tokens,
        native: Tokens,
    },
}

struct Column {
    ident: syn::Ident,
    name: String,
    /// The field's type without `Option`.
    inner: Type,
    nullable: bool,
    kind: Kind,
}

fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) => Some(inner),
        _ => None,
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let mut krate: syn::Path = syn::parse_quote!(::ferroflow::connectors::filesystem);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("arrow")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = meta.value()?.parse::<LitStr>()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("unknown struct attribute (use `crate = \"path\"`)"))
            }
        })?;
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "ArrowRecord needs a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            input,
            "ArrowRecord needs a struct with named fields",
        ));
    };
    let arrow = quote!(#krate::__private::arrow);
    let mut columns = Vec::new();
    for field in &fields.named {
        let ident = field
            .ident
            .clone()
            .ok_or_else(|| syn::Error::new_spanned(field, "unnamed field"))?;
        let mut name = ident.to_string().trim_start_matches("r#").to_string();
        let mut skip = false;
        let mut timestamp: Option<(String, Span)> = None;
        let mut tz: Option<String> = None;
        let mut decimal: Option<(u8, i8)> = None;
        let mut date = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("arrow")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    name = meta.value()?.parse::<LitStr>()?.value();
                } else if meta.path.is_ident("skip") {
                    skip = true;
                } else if meta.path.is_ident("timestamp") {
                    let unit = meta.value()?.parse::<LitStr>()?;
                    timestamp = Some((unit.value(), unit.span()));
                } else if meta.path.is_ident("tz") {
                    tz = Some(meta.value()?.parse::<LitStr>()?.value());
                } else if meta.path.is_ident("date") {
                    date = true;
                } else if meta.path.is_ident("decimal") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let p: syn::LitInt = content.parse()?;
                    content.parse::<syn::Token![,]>()?;
                    let s: syn::LitInt = content.parse()?;
                    decimal = Some((p.base10_parse()?, s.base10_parse()?));
                } else {
                    return Err(meta.error(
                        "unknown field attribute (use rename, skip, timestamp, tz, decimal or date)",
                    ));
                }
                Ok(())
            })?;
        }
        if skip {
            continue;
        }
        let (inner, nullable) = match option_inner(&field.ty) {
            Some(inner) => (inner.clone(), true),
            None => (field.ty.clone(), false),
        };
        let kind = if let Some((unit, span)) = timestamp {
            let (ty, unit) = match unit.as_str() {
                "s" => (quote!(TimestampSecondType), quote!(Second)),
                "ms" => (quote!(TimestampMillisecondType), quote!(Millisecond)),
                "us" => (quote!(TimestampMicrosecondType), quote!(Microsecond)),
                "ns" => (quote!(TimestampNanosecondType), quote!(Nanosecond)),
                _ => {
                    return Err(syn::Error::new(
                        span,
                        "timestamp unit must be s, ms, us or ns",
                    ))
                }
            };
            let tz = match tz {
                Some(tz) => quote!(::std::option::Option::Some(#tz.into())),
                None => quote!(::std::option::Option::None),
            };
            Kind::Primitive {
                arrow: quote!(#arrow::datatypes::#ty),
                data_type: quote!(#arrow::datatypes::DataType::Timestamp(#arrow::datatypes::TimeUnit::#unit, #tz)),
                native: quote!(i64),
            }
        } else if let Some((p, s)) = decimal {
            Kind::Primitive {
                arrow: quote!(#arrow::datatypes::Decimal128Type),
                data_type: quote!(#arrow::datatypes::DataType::Decimal128(#p, #s)),
                native: quote!(i128),
            }
        } else if date {
            Kind::Primitive {
                arrow: quote!(#arrow::datatypes::Date32Type),
                data_type: quote!(#arrow::datatypes::DataType::Date32),
                native: quote!(i32),
            }
        } else {
            if tz.is_some() {
                return Err(syn::Error::new_spanned(field, "`tz` goes with `timestamp`"));
            }
            Kind::Value
        };
        columns.push(Column {
            ident,
            name,
            inner,
            nullable,
            kind,
        });
    }

    let fields_code = columns.iter().map(|c| {
        let (name, nullable) = (&c.name, c.nullable);
        let data_type = match &c.kind {
            Kind::Value => {
                let inner = &c.inner;
                quote!(<#inner as #krate::ArrowValue>::data_type())
            }
            Kind::Primitive { data_type, .. } => data_type.clone(),
        };
        quote!(#arrow::datatypes::Field::new(#name, #data_type, #nullable))
    });
    let builders = columns.iter().enumerate().map(|(i, c)| {
        let b = format_ident!("__b{i}");
        match &c.kind {
            Kind::Value => {
                let inner = &c.inner;
                quote!(let mut #b = <#inner as #krate::ArrowValue>::builder(__rows.len());)
            }
            Kind::Primitive {
                arrow: ty,
                data_type,
                ..
            } => quote!(
                let mut #b = #arrow::array::PrimitiveBuilder::<#ty>::with_capacity(__rows.len())
                    .with_data_type(#data_type);
            ),
        }
    });
    let appends = columns.iter().enumerate().map(|(i, c)| {
        let b = format_ident!("__b{i}");
        let f = &c.ident;
        match (&c.kind, c.nullable) {
            (Kind::Value, false) => quote!(#krate::ArrowValue::append(&__row.#f, &mut #b);),
            (Kind::Value, true) => {
                let inner = &c.inner;
                quote!(match &__row.#f {
                    ::std::option::Option::Some(__v) => #krate::ArrowValue::append(__v, &mut #b),
                    ::std::option::Option::None => <#inner as #krate::ArrowValue>::append_null(&mut #b),
                })
            }
            (Kind::Primitive { native, .. }, false) => {
                quote!(#b.append_value(<#native>::from(::std::clone::Clone::clone(&__row.#f)));)
            }
            (Kind::Primitive { native, .. }, true) => quote!(
                #b.append_option(::std::clone::Clone::clone(&__row.#f).map(<#native>::from));
            ),
        }
    });
    let finishes = (0..columns.len()).map(|i| {
        let b = format_ident!("__b{i}");
        quote!(#arrow::array::ArrayBuilder::finish(&mut #b))
    });
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #krate::ArrowRecord for #ident #ty_generics #where_clause {
            fn arrow_fields() -> ::std::vec::Vec<#arrow::datatypes::Field> {
                ::std::vec![#(#fields_code),*]
            }

            fn to_batch(
                __rows: &[Self],
                __schema: &#arrow::datatypes::SchemaRef,
            ) -> #krate::__private::Result<#arrow::record_batch::RecordBatch> {
                #(#builders)*
                for __row in __rows {
                    #(#appends)*
                }
                let __columns: ::std::vec::Vec<#arrow::array::ArrayRef> = ::std::vec![#(#finishes),*];
                #krate::__private::batch(__schema, __columns)
            }
        }
    })
}
