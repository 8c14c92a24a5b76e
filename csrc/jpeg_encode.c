/* JPEG encoding through the system's libjpeg(-turbo): packed RGB8 in, JFIF bytes out.
 * libjpeg's defaults give 4:2:0 chroma subsampling and the islow DCT, as Pillow does.
 *
 * The output goes to a destination manager of our own rather than jpeg_mem_dest: that one
 * frees its first buffer when it grows and tells the caller the new one only at the end,
 * so an error after a growth left the caller holding a freed pointer (a double free) and
 * leaked the live one. Here the state always holds the one live buffer, freed once. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

struct fc_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

struct fc_dest {
    struct jpeg_destination_mgr pub;
    unsigned char *buf; /* the live buffer, owned by us; NULL until the first init */
    size_t cap;
};

struct fc_progress {
    struct jpeg_progress_mgr pub;
    unsigned fail_at_row; /* 0: never; else fail once this many rows are written (tests) */
};

/* Heap state, so its fields are well defined after longjmp. */
struct fc_state {
    struct jpeg_compress_struct cinfo;
    struct fc_error error;
    struct fc_dest dest;
    struct fc_progress progress;
};

static void fc_error_exit(j_common_ptr cinfo) {
    struct fc_error *err = (struct fc_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void fc_silent(j_common_ptr cinfo) { (void)cinfo; }

static void fc_dest_init(j_compress_ptr cinfo) {
    struct fc_dest *dest = (struct fc_dest *)cinfo->dest;
    if (dest->buf == NULL) {
        dest->cap = 64 * 1024;
        dest->buf = malloc(dest->cap);
        if (dest->buf == NULL) {
            ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
        }
    }
    dest->pub.next_output_byte = dest->buf;
    dest->pub.free_in_buffer = dest->cap;
}

/* The buffer is full: double it, keeping what was written. */
static boolean fc_dest_grow(j_compress_ptr cinfo) {
    struct fc_dest *dest = (struct fc_dest *)cinfo->dest;
    size_t used = dest->cap;
    unsigned char *bigger = realloc(dest->buf, dest->cap * 2);
    if (bigger == NULL) {
        ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
    }
    dest->buf = bigger;
    dest->cap *= 2;
    dest->pub.next_output_byte = dest->buf + used;
    dest->pub.free_in_buffer = dest->cap - used;
    return TRUE;
}

static void fc_dest_term(j_compress_ptr cinfo) { (void)cinfo; }

static void fc_progress_check(j_common_ptr cinfo) {
    struct fc_progress *progress = (struct fc_progress *)cinfo->progress;
    j_compress_ptr c = (j_compress_ptr)cinfo;
    if (progress->fail_at_row != 0 && c->next_scanline >= progress->fail_at_row) {
        ERREXIT(cinfo, JERR_BAD_BUFFER_MODE);
    }
}

/* Returns 0 and sets *out (free with fc_jpeg_free) on success; -1 with a message in err.
 * `fail_at_row` > 0 makes the encode fail once that many rows are in (error-path tests). */
int fc_jpeg_encode_rgb(const unsigned char *rgb, unsigned width, unsigned height, int quality,
                       unsigned fail_at_row, unsigned char **out, unsigned long *out_len,
                       char *err, size_t err_len) {
    struct fc_state *st = calloc(1, sizeof(struct fc_state));
    if (st == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    st->cinfo.err = jpeg_std_error(&st->error.pub);
    st->error.pub.error_exit = fc_error_exit;
    st->error.pub.output_message = fc_silent;
    if (setjmp(st->error.jump)) {
        snprintf(err, err_len, "%s", st->error.message);
        jpeg_destroy_compress(&st->cinfo);
        free(st->dest.buf);
        free(st);
        return -1;
    }
    jpeg_create_compress(&st->cinfo);
    st->dest.pub.init_destination = fc_dest_init;
    st->dest.pub.empty_output_buffer = fc_dest_grow;
    st->dest.pub.term_destination = fc_dest_term;
    st->cinfo.dest = &st->dest.pub;
    st->progress.pub.progress_monitor = fc_progress_check;
    st->progress.fail_at_row = fail_at_row;
    st->cinfo.progress = &st->progress.pub;
    st->cinfo.image_width = width;
    st->cinfo.image_height = height;
    st->cinfo.input_components = 3;
    st->cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&st->cinfo);
    jpeg_set_quality(&st->cinfo, quality, TRUE);
    st->cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&st->cinfo, TRUE);
    while (st->cinfo.next_scanline < st->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)st->cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&st->cinfo, &row, 1);
    }
    jpeg_finish_compress(&st->cinfo);
    *out = st->dest.buf;
    *out_len = (unsigned long)(st->dest.cap - st->dest.pub.free_in_buffer);
    jpeg_destroy_compress(&st->cinfo);
    free(st);
    return 0;
}

void fc_jpeg_free(unsigned char *buf) { free(buf); }
